#!/usr/bin/env python
"""One Markdown row per setting from ``cli_accuracy.py`` result files run one seed per file (``NAME-seedS``).

    python bench/seeds_table.py cli-questions-val1000-          # every bench/results/cli-questions-val1000-*-seed*.json

Per setting: the mean ± sd of ``evaluate``'s test accuracy, each seed's (with the epoch of the evaluation kept and the
evaluation it stopped at), and for ``--search`` runs the trial kept with its settings and validation score.
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
    print("| setting | test accuracy, mean ± sd | per seed (seed: accuracy, epoch kept / stopped) |")
    print("|---|---|---|")
    for name, runs in settings.items():
        accs = [r["evaluate_metrics"]["accuracy"] for _, r in runs]
        sd = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
        seeds = "; ".join(f"{seed}: {r['evaluate_metrics']['accuracy']:.3f} {_epochs(r)}" for seed, r in sorted(runs))
        print(f"| {name} | {statistics.mean(accs):.3f}{sd} ({len(accs)} seeds) | {seeds} |")
    for name, runs in settings.items():
        for seed, r in sorted(runs):
            if r.get("search"):
                s = r["search"]
                best = next(t for t in s["trials"] if t["trial"] == s["best_trial"])
                states = defaultdict(int)
                for t in s["trials"]:
                    states[t["state"]] += 1
                print(f"{name} seed {seed}: kept trial {best}; trials {dict(states)}")


def _epochs(run: dict) -> str:
    """'(kept epoch E of the evaluation kept / the evaluation it stopped at)', from the steps training recorded."""
    t = run["training"]
    per_epoch = t["total_steps"] / t["epochs"]
    kept = ", the adapter at the stop kept" if t.get("kept") == "last" else ""
    return f"({t['best_step'] / per_epoch:.0f}/{t['steps'] / per_epoch:.0f}{kept})"


if __name__ == "__main__":
    main()
