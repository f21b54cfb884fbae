"""Write a benchmark data set's fixed split as CSV files, so the CLI can be run on exactly that data.

    python bench/export_split.py --train-size 2000 --test-size 1000 --out /tmp/movie
    python bench/export_split.py --data manpages --out /tmp/manpages
    python bench/export_split.py --data questions --val-size 1000 --out /tmp/questions   # also val.csv
    python -m ptuning train /tmp/movie/train.csv --out /tmp/movie/adapter --eval /tmp/movie/test.csv
    python -m ptuning evaluate /tmp/movie/adapter /tmp/movie/test.csv
"""

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import NAMES, load, validation  # noqa: E402


def write(path: Path, texts: list[str], labels: list[int], names) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        out.writerows((t, names[y]) for t, y in zip(texts, labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=NAMES, default="movie")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--test-size", type=int)
    parser.add_argument("--val-size", type=int, help="also val.csv: this many texts outside the split (questions)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    split = load(args.data, args.train_size, args.test_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "train.csv", split.train_texts, split.train_labels, split.label_names)
    write(out / "test.csv", split.test_texts, split.test_labels, split.label_names)
    if args.val_size:
        write(out / "val.csv", *validation(args.data, args.val_size), split.label_names)
    val = f" / {args.val_size} validation" if args.val_size else ""
    print(f"{len(split.train_texts)} train{val} / {len(split.test_texts)} test {args.data} texts in {out}")


if __name__ == "__main__":
    main()
