#!/usr/bin/env python
"""Run every benchmark one after the other (``make bench``); each writes its own ``bench/results/*.json``.

    python bench/run_all.py                 # the full runs of BENCHMARKS.md (est. 6 h on 2 idle cores)
    python bench/run_all.py --smoke         # every script at tiny sizes (4 min on the idle machine): checks that they run
    python bench/run_all.py --only speed inference

Timings need an otherwise idle machine: on a shared one, compare only numbers taken in the same run.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

FULL = {  # the runs behind BENCHMARKS.md's tables
    "memory": ["memory.py"],
    "inference": ["inference.py", "--mixed-sizes", "8", "256", "--repeats", "3", "--name", "inference-lengths"],
    "profile-predict": ["profile_predict.py"],
    "speed": ["speed.py", "--train-size", "2000", "--epoch", "--rounds", "2"],
    "baselines-2000": ["baselines.py", "--train-size", "2000", "--test-size", "1000", "--methods", "head-cls",
                       "head-mean", "logreg-mean", "full-ft", "peft-p-tuning", "peft-prompt", "--lr-prompt", "1e-2"],
    "baselines-full-ft-seed1": ["baselines.py", "--train-size", "2000", "--test-size", "1000", "--methods",
                                "full-ft", "--seed", "1", "--name", "baselines-fullft-train2000-test1000-seed1"],
    "baselines-full-ft-seed2": ["baselines.py", "--train-size", "2000", "--test-size", "1000", "--methods",
                                "full-ft", "--seed", "2", "--name", "baselines-fullft-train2000-test1000-seed2"],
    "baselines-full-split": ["baselines.py", "--methods", "full-ft", "head-cls", "head-mean", "logreg-mean",
                             "--name", "baselines-full-split"],
    "accuracy-length-seeds": ["accuracy.py", "--train-size", "2000", "--test-size", "1000", "--epochs", "4",
                              "--methods", "prompt", "deep", "--placements", "start", "--poolings", "mean",
                              "--num-virtual-tokens", "5", "10", "20", "--seeds", "1", "2", "42",
                              "--name", "accuracy-2000-length-seeds"],
    "accuracy-full-split": ["accuracy.py", "--methods", "prompt", "deep", "--placements", "start", "--poolings",
                            "mean", "--num-virtual-tokens", "5", "20", "--epochs", "4",
                            "--name", "accuracy-full-split"],
    "cli-accuracy": ["cli_accuracy.py", "--train-size", "2000", "--test-size", "1000", "--epochs", "4"],
    "cli-manpages": ["cli_accuracy.py", "--data", "manpages", "--holdout", "--name", "cli-manpages-defaults"],
    "cli-questions": ["cli_accuracy.py", "--data", "questions", "--holdout", "--name", "cli-questions-defaults"],
    "long-cuts": ["long_cuts.py", "--data", "manpages"],
    "cli-manpages-budget600": ["cli_accuracy.py", "--data", "manpages", "--holdout", "--name",
                               "cli-manpages-budget600-cut10", "--", "--time-budget", "600"],
    # issue 14: the default through the CLI, full fine-tuning and PEFT LoRA, 3 seeds on each data set
    "cli-movie2000-seeds": ["cli_accuracy.py", "--train-size", "2000", "--test-size", "1000", "--seeds", "1", "2",
                            "42", "--name", "cli-movie2000-defaults-seeds"],
    "cli-movie-full-split-seeds": ["cli_accuracy.py", "--seeds", "1", "2", "42", "--name",
                                   "cli-movie-full-split-defaults-seeds"],
    "cli-questions-seeds": ["cli_accuracy.py", "--data", "questions", "--seeds", "1", "2", "42", "--name",
                            "cli-questions-defaults-seeds"],
    **{f"baselines-lora-seed{s}": ["baselines.py", "--train-size", "2000", "--test-size", "1000", "--methods",
                                   "peft-lora", "--seed", s, "--name", f"baselines-lora-train2000-test1000-seed{s}"]
       for s in ("1", "2", "42")},
    **{f"baselines-questions-seed{s}": ["baselines.py", "--data", "questions", "--methods", "full-ft", "peft-lora",
                                        "--epochs", "10", "--seed", s, "--name",
                                        f"baselines-questions-fullft-lora-seed{s}"] for s in ("1", "2", "42")},
    **{f"baselines-questions-lora-lr2e-3-seed{s}": ["baselines.py", "--data", "questions", "--methods", "peft-lora",
                                                    "--lr-lora", "2e-3", "--epochs", "10", "--seed", s, "--name",
                                                    f"baselines-questions-lora-lr2e-3-seed{s}"] for s in ("1", "2", "42")},
    "accuracy-inits": ["accuracy.py", "--train-size", "2000", "--test-size", "1000", "--epochs", "4", "--methods",
                       "deep", "--placements", "start", "--poolings", "mean", "--num-virtual-tokens", "5",
                       "--inits", "vocab", "labels", "--seeds", "1", "2", "42", "--name",
                       "accuracy-2000-deep5-inits-embeddings"],
    "serve-load": ["serve_load.py"],
}  # fmt: skip
SMOKE = {
    "memory": ["memory.py", "--train-steps", "3", "--predict-texts", "64"],
    "inference": ["inference.py", "--latency-texts", "20", "--batch-texts", "128", "--mixed-sizes", "8", "64",
                  "--repeats", "1"],  # fmt: skip
    "profile-predict": ["profile_predict.py", "--texts", "10", "--rounds", "2", "--lengths", "0", "20"],
    "speed": ["speed.py", "--train-size", "256", "--steps", "8", "--skip", "1", "--rounds", "1"],
    "baselines": ["baselines.py", "--train-size", "256", "--test-size", "256", "--epochs", "1"],
    "accuracy": ["accuracy.py", "--train-size", "128", "--test-size", "128", "--epochs", "1"],
    "cli-accuracy": ["cli_accuracy.py", "--train-size", "128", "--test-size", "64", "--epochs", "1"],
    "cli-manpages": ["cli_accuracy.py", "--data", "manpages", "--holdout", "--train-size", "40", "--test-size", "20",
                     "--epochs", "1"],
    "long-cuts": ["long_cuts.py", "--data", "manpages", "--train-size", "40", "--test-size", "20", "--cuts",
                  "head-128", "chunks-2x256"],
    "serve-load": ["serve_load.py", "--concurrency", "1", "8", "--adapters", "1", "2", "--requests", "30",
                   "--seconds", "5", "--baseline-requests", "20", "--memory-adapters", "5", "--repeats", "1",
                   "--name", "serve-load-smoke"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that every script runs")
    p.add_argument("--only", nargs="+", help="run only these (names as listed by --list)")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    plan = SMOKE if args.smoke else FULL
    if args.list:
        for name, cmd in plan.items():
            print(f"{name:<16} python bench/{shlex.join(cmd)}")
        return
    failed = []
    for name, cmd in plan.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}: python bench/{shlex.join(cmd)}", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(BENCH / cmd[0]), *cmd[1:]]).returncode
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
