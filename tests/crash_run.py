"""A training run that stops dead at a chosen moment of a checkpoint save, for ``test_crashes.py`` to SIGKILL.

    python -m tests.crash_run BACKBONE CHECKPOINT_DIR MOMENT MARKER [resume]

The run is ``test_crashes.run_args`` on ``helpers.sentiment(64)`` (resumed from CHECKPOINT_DIR with ``resume``). At
its second checkpoint save (its first when resumed) it stops at ``MOMENT``, writes ``MARKER`` and sleeps until
killed:
- ``mid-file``: half of ``optimizer.safetensors`` written into the staging directory;
- ``mid-adapter``: half of ``last/adapter_model.safetensors`` written;
- ``between-renames``: the old checkpoint moved aside, the new one not yet in its place;
- ``before-cleanup``: the new checkpoint in place, the old one not yet deleted.
The hooks are patched in here, in the test's own process: the library has none.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ptuning import adapter_files, checkpoints
from ptuning.train import train
from tests import helpers
from tests.test_crashes import run_args, run_config

def main(backbone: str, checkpoint_dir: str, moment: str, marker: str, resume: str = "") -> None:
    torch.set_num_threads(1)  # as the resuming test process: the same arithmetic, bit for bit
    saves, stop_at = {"n": 0}, 1 if resume else 2

    def stop_here() -> None:
        Path(marker).write_text(moment)
        while True:
            time.sleep(1)

    def half_then_stop(path: Path, data: bytes) -> None:
        with open(path, "wb") as f:  # the file's own name: as if the write were not atomic at all
            f.write(data[: len(data) // 2])
        stop_here()

    real_save, real_atomic, real_rename = checkpoints.save_checkpoint, adapter_files.write_atomic, Path.rename
    real_fsync = checkpoints._fsync_directory

    def counting_save(*args, **kwargs):
        saves["n"] += 1
        return real_save(*args, **kwargs)

    def atomic(path, data):
        path = Path(path)
        stopping = saves["n"] == stop_at and path.parent.name.endswith(".saving")
        if stopping and moment == "mid-file" and path.name == checkpoints.OPTIMIZER_STATE:
            half_then_stop(path, data)
        return real_atomic(path, data)

    def atomic_in_adapter(path, data):
        path = Path(path)
        stopping = saves["n"] == stop_at and path.parent.parent.name.endswith(".saving")
        if stopping and moment == "mid-adapter" and path.name == adapter_files.ADAPTER_WEIGHTS:
            half_then_stop(path, data)
        return real_atomic(path, data)

    def rename(self, target):
        if saves["n"] == stop_at and moment == "between-renames" and self.name.endswith(".saving"):
            stop_here()
        return real_rename(self, target)

    def fsync(path):
        if saves["n"] == stop_at and moment == "before-cleanup":
            stop_here()
        return real_fsync(path)

    checkpoints.save_checkpoint = counting_save
    checkpoints.write_atomic = atomic
    adapter_files.write_atomic = atomic_in_adapter
    checkpoints._fsync_directory = fsync
    Path.rename = rename
    import ptuning.train as train_module

    train_module.save_checkpoint = counting_save
    args = run_args(checkpoint_dir, resume=bool(resume))
    train(helpers.sentiment(64), config=run_config(backbone), args=args)
    sys.exit("the run ended without reaching the moment to stop at")


if __name__ == "__main__":
    main(*sys.argv[1:])
