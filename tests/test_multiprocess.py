"""Training on several processes: two processes with batch B give the adapter one process gives with batch 2B.

Real processes over gloo on the CPU, started by ``accelerate launch``. Its ``--cpu`` flag starts a single process
(accelerate 1.16 runs its simple launcher, which ignores ``--num_processes`` without an MPI host file), so the test
asks for ``--multi_gpu`` (torch's distributed launcher) and trains with ``--device cpu``; the adapter records how many
processes trained it, so a run that silently used one fails here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.helpers import write_csv

ROOT = Path(__file__).resolve().parents[1]
# Head dropout off: each process draws its own dropout masks, the one thing a second process changes. No freeze of
# the lower layers: several processes never freeze them (DDP needs every trained weight in every step), one would.
OPTIONS = ["--val-split", "0", "--epochs", "2", "--head-dropout", "0", "--freeze-after", "0", "--device", "cpu",
           "--quiet"]


def labelled_rows(data):
    return ((t, data.label_names[y]) for t, y in zip(data.texts, data.labels))


def train(launcher: list[str], data: Path, out: Path, batch_size: int, *options: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two shared cores
    command = [*launcher, "-m", "ptuning", "train", str(data), "--out", str(out), "--batch-size", str(batch_size)]
    done = subprocess.run([*command, *OPTIONS, *options], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "ptuning_config.json").read_text())["info"]["training"]


def test_two_processes_give_the_adapter_of_one_with_the_same_global_batch(tiny, tmp_path, sentiment):
    # 41 examples in global batches of 8: each epoch ends with a batch of one, so one share is empty
    n = 41
    data = write_csv(tmp_path / "train.csv", labelled_rows(sentiment(n)))
    model = ["--model", tiny("bert")]
    one = train([sys.executable], data, tmp_path / "one", 8, *model)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    two = train(launch, data, tmp_path / "two", 4, *model)

    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["steps"] == two["steps"] == 2 * -(-n // 8)
    single, double = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("one", "two"))
    assert single.keys() == double.keys()  # the default method: prompt, deep tables and head
    for name in single:
        assert torch.allclose(single[name], double[name], rtol=1e-4, atol=1e-6), name
