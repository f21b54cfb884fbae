#!/usr/bin/env python
"""One Markdown row per setting from ``cli_accuracy.py`` result files run one seed per file (``NAME-seedS``).

    python bench/seeds_table.py cli-questions-val1000-          # every bench/results/cli-questions-val1000-*-seed*.json

Per setting: the mean ± sd of ``evaluate``'s test accuracy and of the validation accuracy training kept its adapter
by, each seed's (with the epoch of the evaluation kept and the evaluation it stopped at); for ``--search`` runs the
trial kept with its settings and validation score; per seed, the grid (the settings named ``grid-*``) as a user would
read it, its cell with the best validation accuracy, beside the cell with the best test accuracy (an upper bound).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict

from common import REPO

RESULTS = REPO / "bench" / "results"


def main() -> None:
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    settings: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for path in sorted(RESULTS.glob(f"{prefix}*-seed*.json")):
        stem = re.fullmatch(rf"{re.escape(prefix)}(.*)-seed(\d+)", path.stem)
        for run in json.loads(path.read_text())["results"]["runs"].values():
            settings[stem.group(1)].append((int(stem.group(2)), run))
    print("| setting | test accuracy, mean ± sd | validation accuracy | per seed (seed: test accuracy, epoch kept / "
          "stopped) |")
    print("|---|---|---|---|")
    for name, runs in settings.items():
        accs = [_test(r) for _, r in runs]
        seeds = "; ".join(f"{seed}: {_test(r):.3f} {_epochs(r)}" for seed, r in sorted(runs))
        print(f"| {name} | {_mean(accs)} ({len(accs)} seeds) | {_mean([_validation(r) for _, r in runs])} | {seeds} |")
    by_seed: dict[int, dict[str, dict]] = defaultdict(dict)
    for name, runs in settings.items():
        for seed, r in runs:
            by_seed[seed][name] = r
    for seed, cells in sorted(by_seed.items()):
        grid = {n: r for n, r in cells.items() if n.startswith("grid-")}
        if grid:
            picked = max(grid, key=lambda n: _validation(grid[n]))
            bound = max(grid, key=lambda n: _test(grid[n]))
            print(f"seed {seed}: the grid's best by validation {picked} {_test(grid[picked]):.3f}; by test {bound} "
                  f"{_test(grid[bound]):.3f}; " + ", ".join(f"{n} {_test(r):.3f}" for n, r in cells.items() if n not in grid))
    for name, runs in settings.items():
        for seed, r in sorted(runs):
            if r.get("search"):
                s = r["search"]
                best = next(t for t in s["trials"] if t["trial"] == s["best_trial"])
                states = defaultdict(int)
                for t in s["trials"]:
                    states[t["state"]] += 1
                print(f"{name} seed {seed}: kept trial {best}; trials {dict(states)}")


def _test(run: dict) -> float:
    return run["evaluate_metrics"]["accuracy"]


def _validation(run: dict) -> float:
    """The validation accuracy of the adapter kept: a search's kept trial's, or from the line train printed ('best at
    step N: accuracy X …')."""
    if run.get("search"):
        return next(t for t in run["search"]["trials"] if t["trial"] == run["search"]["best_trial"])["accuracy"]
    line = next(line for line in run["stdout"] if line.startswith("best at step"))
    return float(re.search(r"accuracy ([0-9.]+)", line).group(1))


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def _epochs(run: dict) -> str:
    """'(kept epoch E of the evaluation kept / the evaluation it stopped at)', from the steps training recorded."""
    t = run["training"]
    per_epoch = t["total_steps"] / t["epochs"]
    kept = ", the adapter at the stop kept" if t.get("kept") == "last" else ""
    return f"({t['best_step'] / per_epoch:.0f}/{t['steps'] / per_epoch:.0f}{kept})"


if __name__ == "__main__":
    main()
