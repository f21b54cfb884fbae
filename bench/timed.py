#!/usr/bin/env python
"""Time a whole benchmark process and write its wall seconds into the result file it wrote.

    python bench/timed.py -- python bench/baselines.py --methods full-ft --seed 1 --name fullft-process-seed1

The command must name its result with ``--name NAME``: after it exits, ``bench/results/NAME.json`` gets
``process_wall_s`` (imports, loading, training and evaluation: what a user waits for) and ``process_note``. This is
how full fine-tuning is timed beside ``ptuning train``, whose process ``cli_accuracy.py`` times the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from common import REPO


def main() -> None:
    command = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    if "--name" not in command:
        sys.exit("give the command's --name: its result file gets the process's seconds")
    name = command[command.index("--name") + 1]
    start = time.perf_counter()
    code = subprocess.call(command, cwd=REPO)
    wall = time.perf_counter() - start
    if code:
        sys.exit(f"the command failed (exit {code}); nothing written")
    path = REPO / "bench" / "results" / f"{name}.json"
    result = json.loads(path.read_text())
    result["process_wall_s"] = round(wall, 1)
    result["process_note"] = ("wall seconds of the whole process (imports, loading, training, the evaluations), "
                              "measured around it by bench/timed.py")  # fmt: skip
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: the process took {wall:.1f} s")


if __name__ == "__main__":
    main()
