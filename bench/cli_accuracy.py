#!/usr/bin/env python
"""Accuracy and wall time of ``python -m ptuning train`` then ``evaluate``, as a user would run them.

    python bench/cli_accuracy.py --train-size 2000 --test-size 1000 --epochs 4      # a row in BENCHMARKS.md
    python bench/cli_accuracy.py --data manpages --seeds 1 2 42                      # the defaults, no option
    python bench/cli_accuracy.py --data manpages -- --time-budget 120               # anything after -- goes to train

Exports the split as CSV (``export_split.py``) and trains with the CLI's defaults (plus ``--epochs`` when given and
anything after ``--``). By default the test file is passed as ``--eval`` (so the adapter kept is the best of the
evaluations on it, as the other scripts' "best accuracy"); with ``--holdout`` training keeps its own validation split
(the CLI's default) and the test file is seen only by ``evaluate``; with ``--val-size N`` (questions) training is
scored on N other texts (``export_split.py``'s val.csv, as ``--eval``) and the test file too is seen only by
``evaluate``. Then ``evaluate`` runs on the saved adapter in a new process. Per seed the result file holds the
commands, the estimate the CLI printed first, the wall time of the ``train`` process, the adapter's settings, what
training recorded, and the metrics ``evaluate`` printed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Run, data_args, log, result_name, setup
from corpora import NAMES


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), epochs=None)
    p.add_argument("--data", choices=NAMES, default="movie")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="one run per seed (default: --seed)")
    p.add_argument("--holdout", action="store_true", help="train on the CLI's own validation split, not the test set")
    p.add_argument("--val-size", type=int, help="score training on this many texts outside the split (questions)")
    p.add_argument("train_options", nargs="*", help="more `ptuning train` options, after --")
    args = p.parse_args()
    setup(args)
    name = args.name or "-".join(
        [result_name("cli", args, defaults={"epochs": None})] + ([args.data] if args.data != "movie" else [])
    )
    run = Run(name, args)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        given = (("train", args.train_size), ("test", args.test_size), ("val", args.val_size))
        sizes = [f"--{k}-size={v}" for k, v in given if v]
        export = [sys.executable, "bench/export_split.py", "--data", args.data, *sizes, "--out", str(data)]
        _run(export)
        for seed in args.seeds or [args.seed]:
            runs[f"seed={seed}"] = one_run(data, seed, args)
            run.write({"runs": runs, "summary": summarise(runs)}, quiet=True)
    run.write({"runs": runs, "summary": summarise(runs)})


def one_run(data: Path, seed: int, args) -> dict:
    adapter = data / f"adapter-{seed}"
    train = [sys.executable, "-m", "ptuning", "train", str(data / "train.csv"), "--out", str(adapter), "--seed",
             str(seed), "--quiet", *(["--epochs", str(args.epochs)] if args.epochs else []),
             *([] if args.holdout else ["--eval", str(data / ("val.csv" if args.val_size else "test.csv"))]),
             *args.train_options]  # fmt: skip
    evaluate = [sys.executable, "-m", "ptuning", "evaluate", str(adapter), str(data / "test.csv")]
    start = time.perf_counter()
    trained = _run(train)
    wall = time.perf_counter() - start
    metrics = json.loads(_run(evaluate).stdout.strip().splitlines()[-1])  # evaluate's last stdout line is its JSON
    saved = json.loads((adapter / "ptuning_config.json").read_text())
    estimate = next((line for line in trained.stderr.splitlines() if line.startswith("estimate:")), "")
    log(f"seed {seed}: accuracy {metrics['accuracy']:.4f}, train {wall:.0f} s; {estimate}")
    return {
        "commands": [" ".join(["python", *c[1:]]).replace(str(data), "DATA") for c in (train, evaluate)],
        "estimate_line": estimate,
        "estimated_s": _seconds(estimate),
        "train_process_wall_s": round(wall, 1),
        "stdout": trained.stdout.strip().splitlines()[:3],
        "adapter_config": saved["config"],
        "training": saved["info"].get("training"),
        "search": saved["info"].get("search"),  # --search: every trial's settings, state and validation score
        "evaluate_metrics": metrics,
    }


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd[1:]))
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def _seconds(line: str) -> float | None:
    """Seconds in the CLI's ``estimate: about 3 min 20 s of training ...`` line."""
    found = re.search(r"about ((?:\d+ h ?)?(?:\d+ min ?)?(?:\d+ s)?) of training", line)
    if not found:
        return None
    units = {"h": 3600, "min": 60, "s": 1}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+) (h|min|s)\b", found.group(1))))


def summarise(runs: dict) -> dict:
    accs = [r["evaluate_metrics"]["accuracy"] for r in runs.values()]
    walls = [r["train_process_wall_s"] for r in runs.values()]
    return {"runs": len(accs), "accuracy_mean": round(statistics.mean(accs), 4),
            "accuracy_sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
            "train_wall_s_mean": round(statistics.mean(walls), 1)}  # fmt: skip


if __name__ == "__main__":
    main()
