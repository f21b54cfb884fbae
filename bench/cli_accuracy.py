#!/usr/bin/env python
"""Accuracy of ``python -m ptuning train`` then ``evaluate`` on the fixed movie split, as a user would run them.

    python bench/cli_accuracy.py --train-size 2000 --test-size 1000 --epochs 4      # the row in BENCHMARKS.md
    python bench/cli_accuracy.py --train-size 2000 --test-size 1000 --epochs 4 -- --prompt-length 20

Exports the split as CSV (``export_split.py``), trains with the CLI's defaults (plus ``--epochs`` and anything after
``--``), the test file as ``--eval`` (so the adapter kept is the best of the per-epoch evaluations, as the other
scripts' "best accuracy"), then runs ``evaluate`` on the saved adapter in a new process. The result file holds the
commands, the adapter's settings, what training recorded, and the metrics ``evaluate`` printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, Run, data_args, log, result_name, setup


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), epochs=4)
    p.add_argument("train_options", nargs="*", help="more `ptuning train` options, after --")
    args = p.parse_args()
    setup(args)
    run = Run(result_name("cli", args, defaults={"epochs": None}), args)
    with tempfile.TemporaryDirectory() as tmp:
        data, adapter = Path(tmp), Path(tmp) / "adapter"
        sizes = [f"--{k}-size={v}" for k, v in (("train", args.train_size), ("test", args.test_size)) if v]
        commands = [
            [sys.executable, "bench/export_split.py", *sizes, "--out", str(data)],
            [sys.executable, "-m", "ptuning", "train", str(data / "train.csv"), "--out", str(adapter), "--eval",
             str(data / "test.csv"), "--epochs", str(args.epochs), "--seed", str(args.seed), "--quiet",
             *args.train_options],
            [sys.executable, "-m", "ptuning", "evaluate", str(adapter), str(data / "test.csv")],
        ]  # fmt: skip
        outputs = []
        for cmd in commands:
            log("$ " + " ".join(cmd[1:]))
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"failed ({done.returncode}):\n{done.stderr[-3000:]}")
            outputs.append(done.stdout)
        saved = json.loads((adapter / "ptuning_config.json").read_text())
    metrics = json.loads(outputs[-1].strip().splitlines()[-1])  # evaluate's last stdout line is its JSON
    run.write({
        "commands": [" ".join(["python", *c[1:]]).replace(str(data), "DATA") for c in commands],
        "adapter_config": saved["config"],
        "training": saved["info"].get("training"),
        "evaluate_metrics": metrics,
    })  # fmt: skip
    log(f"evaluate: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")


if __name__ == "__main__":
    main()
