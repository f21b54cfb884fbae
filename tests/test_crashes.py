"""Files that survive crashes: an adapter save or a checkpoint cut short at any moment leaves whole files that load
as one save or are refused in one line, and a killed training run resumes from its last good checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ptuning import AdapterError, PromptClassifier, adapter_files
from ptuning.adapter_files import ADAPTER_WEIGHTS, PTUNING_CONFIG, RESUME_WEIGHTS
from ptuning.checkpoints import OPTIMIZER_STATE, RNG_STATE, TRAINER_STATE
from ptuning.errors import ConfigError
from ptuning.train import TrainingArguments, train
from tests.helpers import same_weights, weights

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def run_config(backbone: str) -> dict:
    return {"base_model": backbone, "num_virtual_tokens": 4, "method": "p-tuning", "head_dropout": 0.3}


def run_args(checkpoint_dir: str, **changes) -> TrainingArguments:
    options = dict(epochs=3, batch_size=16, lr=0.1, head_lr=0.05, patience=0, val_split=0.25, seed=3)
    return TrainingArguments(checkpoint_dir=str(checkpoint_dir), **{**options, **changes})


# -- adapter files --------------------------------------------------------------------------------------------
def two_adapters(tiny, make):
    old = make(tiny("bert"), method="p-tuning", seed=1)
    new = make(tiny("bert"), method="p-tuning", seed=2)
    return old, new


def test_a_save_cut_short_at_any_rename_loads_one_whole_save_or_is_refused(tiny, make, tmp_path, monkeypatch, texts):
    old, new = two_adapters(tiny, make)
    expected = {"old": old.predict(texts), "new": new.predict(texts)}
    real_replace, outcomes = os.replace, []
    for renames in range(4):  # a p-tuning save renames four files into place: cut it short after 0, 1, 2 or 3
        folder = tmp_path / f"cut-{renames}"
        old.save_pretrained(folder)
        done = []

        def replace(src, dst):
            if len(done) == renames:
                raise KeyboardInterrupt("the process dies here")
            done.append(dst)
            return real_replace(src, dst)

        with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
            patched.setattr(adapter_files.os, "replace", replace)
            new.save_pretrained(folder)
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # no half-written leftovers
        try:
            got = PromptClassifier.from_pretrained(folder).predict(texts)
        except AdapterError as error:
            assert "two different saves" in str(error)
            outcomes.append("refused")
        else:
            outcomes.append(next(name for name, e in expected.items() if e == got))
    assert outcomes[0] == "old" and set(outcomes) <= {"old", "refused"} and "refused" in outcomes


def test_weights_from_another_save_are_refused_in_one_line(tiny, make, tmp_path):
    old, new = two_adapters(tiny, make)
    old.save_pretrained(tmp_path / "old")
    new.save_pretrained(tmp_path / "new")
    (tmp_path / "old" / ADAPTER_WEIGHTS).write_bytes((tmp_path / "new" / ADAPTER_WEIGHTS).read_bytes())
    with pytest.raises(AdapterError, match="two different saves") as refused:
        PromptClassifier.from_pretrained(tmp_path / "old")
    assert len(str(refused.value).splitlines()) == 1


def test_an_encoder_file_the_config_does_not_list_is_ignored(tiny, make, tmp_path, texts):
    clf = make(tiny("bert"), method="p-tuning", seed=1)
    clf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / PTUNING_CONFIG).read_text())
    del config["weights_sha256"][RESUME_WEIGHTS]  # as after a save of a table-only adapter over a p-tuning one
    (tmp_path / PTUNING_CONFIG).write_text(json.dumps(config))
    save_file({"embedding.weight": torch.zeros(3, 32)}, tmp_path / RESUME_WEIGHTS)  # a stale, wrong encoder
    assert PromptClassifier.from_pretrained(tmp_path).predict(texts) == clf.predict(texts)


def test_adapters_saved_before_digests_existed_still_load(tiny, make, tmp_path, texts):
    clf = make(tiny("bert"))
    clf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / PTUNING_CONFIG).read_text())
    del config["weights_sha256"]
    (tmp_path / PTUNING_CONFIG).write_text(json.dumps(config))
    assert PromptClassifier.from_pretrained(tmp_path).predict(texts) == clf.predict(texts)


# -- checkpoints ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpointed(tiny, tmp_path_factory, sentiment):
    """A whole run with checkpoints: its folder, and its final adapter's weights."""
    folder = tmp_path_factory.mktemp("whole") / "checkpoint"
    torch.set_num_threads(1)
    result = train(sentiment(64), config=run_config(tiny("bert")), args=run_args(folder))
    return folder, weights(result.model)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def retype(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


DAMAGE = {
    "trainer state truncated": lambda d: truncate(d / TRAINER_STATE),
    "trainer state not an object": lambda d: (d / TRAINER_STATE).write_text("[1, 2]"),
    "optimizer truncated": lambda d: truncate(d / OPTIMIZER_STATE),
    "rng garbled": lambda d: (d / RNG_STATE).write_bytes(b"\x00" * 64),
    "rng missing": lambda d: (d / RNG_STATE).unlink(),
    "last adapter truncated": lambda d: truncate(d / "last" / ADAPTER_WEIGHTS),
    "progress of the wrong type": lambda d: retype(d / TRAINER_STATE, step="six", history=None),
    "scheduler of the wrong shape": lambda d: retype(d / TRAINER_STATE, scheduler=[1]),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_refused_in_one_line(checkpointed, tiny, tmp_path, sentiment, damage):
    import shutil

    folder = tmp_path / "checkpoint"
    shutil.copytree(checkpointed[0], folder)
    DAMAGE[damage](folder)
    with pytest.raises(ConfigError) as refused:
        train(sentiment(64), config=run_config(tiny("bert")), args=run_args(folder, resume=True))
    assert "damaged" in str(refused.value) and len(str(refused.value).splitlines()) == 1


def kill_while_saving(backbone: str, folder: Path, moment: str, resume: bool = False) -> None:
    """Run ``tests/crash_run.py`` until it stops at ``moment`` of a checkpoint save, then SIGKILL it."""
    marker = folder.with_name(f"stopped-{moment}-{resume}")
    command = [sys.executable, "-m", "tests.crash_run", backbone, str(folder), moment, str(marker)]
    command += ["resume"] * resume
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run never reached the moment to stop at"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)


@pytest.mark.parametrize("moment", ["mid-file", "mid-adapter", "between-renames", "before-cleanup"])
def test_a_run_killed_while_saving_a_checkpoint_resumes_from_the_last_good_one(
    checkpointed, tiny, tmp_path, sentiment, moment
):
    folder = tmp_path / "checkpoint"
    kill_while_saving(tiny("bert"), folder, moment)

    resumed = train(sentiment(64), config=run_config(tiny("bert")), args=run_args(folder, resume=True))
    assert resumed.state.step == 9 and not resumed.state.cancelled
    assert same_weights(weights(resumed.model), checkpointed[1])  # as if the run had never been killed
    assert not folder.with_name("checkpoint.old").exists()


def test_a_run_killed_twice_between_the_renames_still_resumes(checkpointed, tiny, tmp_path, sentiment):
    folder = tmp_path / "checkpoint"
    kill_while_saving(tiny("bert"), folder, "between-renames")
    kill_while_saving(tiny("bert"), folder, "between-renames", resume=True)  # its first save is killed there too

    resumed = train(sentiment(64), config=run_config(tiny("bert")), args=run_args(folder, resume=True))
    assert resumed.state.step == 9 and same_weights(weights(resumed.model), checkpointed[1])
