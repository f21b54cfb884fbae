#!/usr/bin/env python
"""Accuracy of ptuning's methods x placements x poolings on all-MiniLM-L6-v2, movie polarity.

    python bench/accuracy.py --train-size 2000 --epochs 5              # the 24-run grid on 2,000 examples
    python bench/accuracy.py --methods p-tuning --placements start --poolings mean model     # a slice
    python bench/accuracy.py --train-size 256 --test-size 256 --epochs 1 --methods prompt --placements start end
                                                                        # smoke test
    python bench/accuracy.py --methods prompt deep --placements start --poolings mean \
        --num-virtual-tokens 5 10 20 --seeds 1 2 3                      # prompt length x seeds

Every configuration runs once per seed in ``--seeds`` (default: ``--seed``); with more than one seed the result
file also holds, per configuration, the mean, the sample standard deviation, the min and the max of the best
accuracies (``summary``), so configurations can be ranked against the spread between inits.

Every run: a fresh adapter (seed ``--seed``), 20 prompt vectors (the template: ``[P:10] {text} [P:10]``), trained
by ``ptuning.train.train`` (what ``python -m ptuning train`` runs) with its defaults unless a flag says otherwise
(lr per method: prompt 3e-2, p-tuning 1e-2, deep 1e-2; head 1e-2; 10% warm-up then linear decay; clipping at 1.0;
batch 32), no early stopping, the test split evaluated after every epoch (it is the validation set, as in
``baselines.py``). Texts are cut at 64 tokens, the prompt comes on top. The result file is rewritten after every
run, and ``--resume`` skips the runs a previous (interrupted) invocation with the same name already finished.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics

from common import RESULTS, Run, data_args, log, result_name, seed_everything, setup
from corpora import NAMES, load
from loops import train_ours

METHODS = ("prompt", "p-tuning", "deep")
PLACEMENTS = ("start", "middle", "end", "[P:10] {text} [P:10]")
POOLINGS = ("mean", "model")


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), epochs=5)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--placements", nargs="+", default=list(PLACEMENTS), help="start, middle, end or templates")
    p.add_argument("--poolings", nargs="+", choices=("mean", "model", "first", "last"), default=list(POOLINGS))
    p.add_argument("--num-virtual-tokens", type=int, nargs="+", default=[20],
                   help="prompt lengths for start/middle/end (a template sets its own)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="one run per seed (default: --seed)")
    p.add_argument("--inits", nargs="+", choices=("vocab", "labels", "random"), default=["vocab"],
                   help="prompt inits (vocab: ptuning's default; labels: the label names' words first)")
    p.add_argument("--lr", type=float, default=None, help="prompt lr (default: ptuning's per-method default)")
    p.add_argument("--head-lr", type=float, default=None, help="head lr (default: ptuning's, 1e-2)")
    p.add_argument("--ours", choices=("train", "local"), default="train",
                   help="train: ptuning.train.train; local: a bare loop over ptuning.model")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="skip runs already in this result file")
    p.add_argument("--data", choices=NAMES, default="movie")
    args = p.parse_args()
    setup(args)
    name = result_name("accuracy" + ("" if args.data == "movie" else f"-{args.data}"), args, defaults={"epochs": 5})
    run = Run(name, args)

    split = load(args.data, args.train_size, args.test_size)
    log(f"data: {split.describe()}")
    runs: dict = {}
    previous = RESULTS / f"{name}.json"
    if args.resume and previous.is_file():
        runs = json.loads(previous.read_text())["results"]["runs"]
        log(f"resuming: {len(runs)} runs done")
    seeds = args.seeds or [args.seed]
    grid = list(itertools.product(args.methods, args.placements, args.poolings, args.num_virtual_tokens, args.inits,
                                  seeds))  # fmt: skip
    for i, (method, placement, pooling, n, init, seed) in enumerate(grid, 1):
        key = run_key(method, placement, pooling, n, init, seed, args)
        if key in runs:
            continue
        runs[key] = one_run(method, placement, pooling, n, init, seed, split, args)
        r = runs[key]
        log(f"[{i}/{len(grid)}] {key}: best {r['best_accuracy']:.4f} at epoch {r['best_epoch']}, "
            f"{r['mean_epoch_wall_s']:.1f} s/epoch")  # fmt: skip
        run.write({"data": split.describe(), "runs": runs, "summary": summarise(runs)}, quiet=True)
    run.write({"data": split.describe(), "runs": runs, "summary": summarise(runs)})
    print_table(runs)


def run_key(method: str, placement: str, pooling: str, n: int, init: str, seed: int, args) -> str:
    """``method | placement | pooling``, plus ``| n=..``, ``| init=..`` and ``| seed=..`` when those are swept."""
    key = f"{method} | {placement} | {pooling}"
    if len(args.num_virtual_tokens) > 1 or args.num_virtual_tokens != [20]:
        key += f" | n={n}"
    if args.inits != ["vocab"]:
        key += f" | init={init}"
    if args.seeds:
        key += f" | seed={seed}"
    return key


def summarise(runs: dict) -> dict:
    """Per configuration (the key without its seed): mean, sample sd, min and max of the best accuracies."""
    by_config: dict[str, list[float]] = {}
    for key, r in runs.items():
        config = key.split(" | seed=")[0]
        by_config.setdefault(config, []).append(r["best_accuracy"])
    return {config: spread(accs) for config, accs in by_config.items()}


def spread(values: list[float]) -> dict:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"runs": len(values), "mean": round(statistics.mean(values), 4), "sd": round(sd, 4),
            "min": min(values), "max": max(values)}  # fmt: skip


def one_run(method: str, placement: str, pooling: str, n: int, init: str, seed: int, split, args) -> dict:
    from ptuning import PromptClassifier, PromptConfig

    seed_everything(seed)
    config = PromptConfig(labels=list(split.label_names), method=method, placement=placement, pooling=pooling,
                          num_virtual_tokens=n, init=init)  # fmt: skip
    clf = PromptClassifier(config=config, device="cpu")
    log_, summary = train_ours(
        clf, split.train_texts, split.train_labels, split.test_texts, split.test_labels, epochs=args.epochs,
        batch_size=args.batch_size, max_length=args.max_length, seed=seed, lr=args.lr, head_lr=args.head_lr,
        impl=args.ours,
    )  # fmt: skip
    spe = summary["steps_per_epoch"]
    walls = log_.epoch_walls(spe)
    history = [
        {"epoch": round(h["step"] / spe, 2), "accuracy": h["accuracy"], "train_wall_s": round(w, 2)}
        for h, w in zip(summary["history"], walls)
    ]
    best = max(history, key=lambda h: h["accuracy"])  # first among ties
    examples = sum(b for b, _ in log_.shapes)
    positions = sum(b * L for b, L in log_.shapes)
    return {
        "best_accuracy": best["accuracy"],
        "best_epoch": best["epoch"],
        "mean_epoch_wall_s": sum(walls) / len(walls),
        "examples_per_s": examples / sum(walls),
        "padding_fraction": round(1 - sum(log_.real_tokens) / positions, 4),
        "trainable_parameters": clf.num_trainable_parameters(),
        "num_virtual_tokens": clf.config.num_virtual_tokens,
        "init": init,
        "seed": seed,
        "lr": summary["lr"],
        "head_lr": summary["head_lr"],
        "impl": summary["impl"],
        "history": history,
    }


def print_table(runs: dict) -> None:
    print(f"\n{'method | placement | pooling':<44} {'best acc':>8} {'epoch':>6} {'s/epoch':>8} {'ex/s':>6}")
    for key, r in runs.items():
        print(f"{key:<44} {r['best_accuracy']:>8.4f} {r['best_epoch']:>6} {r['mean_epoch_wall_s']:>8.1f} "
              f"{r['examples_per_s']:>6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
