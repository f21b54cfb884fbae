#!/usr/bin/env python
"""Accuracy against the wall-clock seconds of the whole training process, one series per setting: each seed a small
dot, the mean a large one with the seeds' standard deviation both ways (issue 22's picture).

    python bench/plot_accuracy_time.py --title "movie 2,000 / 1,000" --out bench/results/accuracy-time-movie2000.png \
        --series "default=cli-movie2000-defaults-seeds" --series "start layer 2=cli-movie2000-start2-seeds" \
        --series "full fine-tuning=fullft-process-train2000-test1000-seed42,fullft-process-train2000-test1000-seed1"

A series names result files in ``bench/results`` (without ``.json``), comma-separated. A ``cli_accuracy.py`` file
gives one point per seed (the accuracy ``evaluate`` printed, the ``train`` process's wall time); a ``baselines.py``
file gives one point (its method's best accuracy; the seconds of the whole process when ``process_wall_s`` was
recorded beside it, else the script's own ``total_wall_s``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def points(name: str) -> list[tuple[float, float]]:
    """``(seconds, accuracy)`` of every run in result file ``name``."""
    data = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    results = data["results"]
    if "runs" in results:  # cli_accuracy.py: one run per seed
        return [(r["train_process_wall_s"], r["evaluate_metrics"]["accuracy"]) for r in results["runs"].values()]
    method = next(k for k, v in results.items() if isinstance(v, dict) and "best_accuracy" in v)
    seconds = data.get("process_wall_s") or data["total_wall_s"]
    return [(seconds, results[method]["best_accuracy"])]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--series", action="append", required=True, metavar="LABEL=FILE[,FILE...]")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--legend", default="lower right", help="where the legend goes (matplotlib's loc; 'best' avoids points)")
    a = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, spec in enumerate(a.series):
        label, files = spec.split("=", 1)
        runs = [pt for name in files.split(",") for pt in points(name.strip())]
        xs, ys = [x for x, _ in runs], [y for _, y in runs]
        color = f"C{i}"
        ax.scatter(xs, ys, s=14, color=color, alpha=0.5)
        sx = statistics.stdev(xs) if len(xs) > 1 else 0.0
        sy = statistics.stdev(ys) if len(ys) > 1 else 0.0
        ax.errorbar(statistics.mean(xs), statistics.mean(ys), xerr=sx, yerr=sy, fmt="o", ms=8, color=color,
                    capsize=3, label=f"{label} ({statistics.mean(ys):.3f}, {statistics.mean(xs):.0f} s; n={len(runs)})")
    ax.set_xlabel("seconds of the whole training process (2 CPU cores)")
    ax.set_ylabel("test accuracy")
    ax.set_title(a.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=a.legend)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
