#!/usr/bin/env python
"""Which adapter a run keeps when it holds out its own validation split: every evaluation's validation and test
scores, and what each selection rule would have kept.

    python bench/selection.py --data questions --seeds 1 2 42
    python bench/selection.py --data movie --train-size 2000 --test-size 1000 --seeds 1 2 42

``python -m ptuning train FILE`` with no option holds out 10 % of FILE, keeps the adapter of the best validation
accuracy (ties: the lower validation loss) and stops after ``patience`` (5) evaluations without a better one. On 600
examples that is 60 validation texts. This script trains as the CLI does (``ptuning.train.train``, the default
arguments, the file read by ``load_dataset``) but with ``patience=0`` (never stopping early) and scores the test
split at every evaluation too, so that the rules below can be replayed on one trajectory per seed: which evaluation
each keeps, and its test accuracy. ``oracle`` (the best test accuracy of any evaluation) is what selecting on the
test set approaches; it is a bound, not a rule.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import RESULTS, Run, command_line, data_args, log, result_name, setup
from corpora import NAMES, load
from export_split import write

from ptuning.data import load_dataset
from ptuning.evaluation import evaluate
from ptuning import train as train_module
from ptuning.train import Callback, train
from ptuning.training_args import TrainingArguments

PATIENCES = (3, 5, 10, 20)


class TestScores(Callback):
    """At every evaluation, the test accuracy of the adapter as it stands (the run's own model)."""

    def __init__(self, holder: dict, test):
        self.holder, self.test, self.scores = holder, test, []

    def on_evaluate(self, state, metrics) -> None:
        acc = evaluate(self.holder["clf"], self.test)["accuracy"]
        self.scores.append({"step": state.step, "test_accuracy": acc})


def trajectory(train_csv: Path, test_csv: Path, seed: int, options: dict) -> list[dict]:
    """One run as the CLI trains it, never stopped early: per evaluation step, epoch, val loss/accuracy and test
    accuracy."""
    holder: dict = {}
    build = train_module._build_adapter

    def keep(*a, **k):  # the run's own adapter, to score on the test set as it trains
        built = build(*a, **k)
        holder["clf"] = built[0]
        return built

    data = load_dataset(str(train_csv))
    test = load_dataset(str(test_csv), label_names=data.label_names)
    scores = TestScores(holder, test)
    train_module._build_adapter = keep
    try:
        result = train(data, config=options, args=TrainingArguments(seed=seed, patience=0), callbacks=[scores])
    finally:
        train_module._build_adapter = build
    test_at = {s["step"]: s["test_accuracy"] for s in scores.scores}
    return [{"step": h["step"], "epoch": h["epoch"], "val_loss": h["val_loss"], "val_accuracy": h["accuracy"],
             "test_accuracy": test_at[h["step"]]} for h in result.state.history]  # fmt: skip


def replay(points: list[dict]) -> dict:
    """What each rule keeps from one trajectory: ``{rule: {"step", "test_accuracy"}}``."""

    def kept(patience: int | None, at_stop: bool = False) -> dict:
        best, best_loss, since, chosen = None, float("inf"), 0, points[0]
        for p in points:
            if train_module._is_better(p["val_accuracy"], p["val_loss"], best, best_loss, True):
                best, best_loss, since, chosen = p["val_accuracy"], p["val_loss"], 0, p
            else:
                since += 1
            if patience and since >= patience:
                return p if at_stop else chosen
        return points[-1] if at_stop else chosen

    rules = {f"patience {n}": kept(n) for n in PATIENCES}
    rules |= {f"patience {n}, the adapter at the stop": kept(n, at_stop=True) for n in (5, 10)}
    rules["no early stop (best val accuracy)"] = kept(None)
    rules["lowest val loss"] = min(points, key=lambda p: p["val_loss"])
    rules["last"] = points[-1]
    rules["oracle (best test)"] = max(points, key=lambda p: p["test_accuracy"])
    return {rule: {"step": p["step"], "epoch": p["epoch"], "test_accuracy": p["test_accuracy"]} for rule, p in rules.items()}


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), with_epochs=False)
    p.add_argument("--data", choices=NAMES, default="questions")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 42])
    p.add_argument("--method", default=None, help="ptuning's --method (default: the library's)")
    p.add_argument("--prompt-length", type=int, default=None, help="ptuning's --prompt-length (default: the library's)")
    p.add_argument("--replay", metavar="NAME", help="no training: replay the rules on result file NAME's trajectories")
    args = p.parse_args()
    if args.replay:
        return replay_file(RESULTS / f"{args.replay}.json")
    setup(args)
    name = result_name(f"selection-{args.data}", args, sizing=("train_size", "test_size"))
    run = Run(name, args)
    split = load(args.data, args.train_size, args.test_size)
    options = {k: v for k, v in (("method", args.method), ("num_virtual_tokens", args.prompt_length)) if v is not None}
    runs: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write(out / "train.csv", split.train_texts, split.train_labels, split.label_names)
        write(out / "test.csv", split.test_texts, split.test_labels, split.label_names)
        for seed in args.seeds:
            points = trajectory(out / "train.csv", out / "test.csv", seed, options)
            runs[f"seed={seed}"] = {"evaluations": points, "kept": replay(points)}
            log(f"seed {seed}: " + ", ".join(f"{r} {k['test_accuracy']:.3f}" for r, k in runs[f"seed={seed}"]["kept"].items()))
            run.write({"data": split.describe(), "options": options, "runs": runs, "summary": summarise(runs)}, quiet=True)
    print(run.write({"data": split.describe(), "options": options, "runs": runs, "summary": summarise(runs)}))


def replay_file(path: Path) -> None:
    """Recompute every run's kept adapters and the summary from the saved trajectories (the rules may have grown)."""
    saved = json.loads(path.read_text())
    runs = saved["results"]["runs"]
    for run in runs.values():
        run["kept"] = replay(run["evaluations"])
    saved["results"]["summary"] = summarise(runs)
    saved["replayed_by"] = command_line()
    path.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    for rule, v in saved["results"]["summary"].items():
        print(f"{rule:45s} {v['mean']:.4f} ± {v['sd']:.4f}  {v['runs']}")


def summarise(runs: dict) -> dict:
    """Per rule: the mean and sd of the test accuracy it keeps over the seeds."""
    rules = next(iter(runs.values()))["kept"]
    out = {}
    for rule in rules:
        accs = [r["kept"][rule]["test_accuracy"] for r in runs.values()]
        out[rule] = {"mean": round(statistics.mean(accs), 4),
                     "sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0, "runs": accs}  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main())
