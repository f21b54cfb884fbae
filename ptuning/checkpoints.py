"""Checkpoints of a training run: safetensors and JSON, never pickles; the on-disk format is a contract.

A checkpoint directory holds:
- ``last/`` and ``best/``: adapters (loadable as they are) with the weights now and at the best evaluation;
- ``optimizer.safetensors``: the optimizer's tensors (AdamW's moments);
- ``rng_state.safetensors``: the run's own random generator (``seeding``), so that a resumed run draws the same
  dropout masks;
- ``average.safetensors`` (a run that keeps a moving average of its weights, ``averaging.py``): that average, by
  parameter name. ``last/`` holds the weights as trained, ``best/`` what the run keeps (the average at the best
  evaluation);
- ``trainer_state.json``: everything else. The run's identity (``args``, ``config``, ``data_fingerprint``,
  ``resolved``: what a resumed run must share), its progress (``step``, ``epoch``, ``history``, ``best_*``,
  ``since_best``, ``loss_sum``, ``loss_count``, ``elapsed_s``, ``finished``, ...), the optimizer's other state and
  hyperparameters (``optimizer``) and the scheduler's (``scheduler``), under ``format_version``.

A save writes a new directory beside the old one (``checkpoint.saving``) and swaps them only once it is complete,
through ``checkpoint.old``; whenever a process is killed, one complete checkpoint remains (``checkpoint``, or
``checkpoint.old`` between the two renames, which the next load or save puts back). A damaged checkpoint is refused
in one line (a ConfigError), never a traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .adapter_files import safetensors_bytes, write_atomic, write_json
from .errors import ConfigError, PtuningError
from .model import PromptClassifier
from .training_args import TrainingArguments

if TYPE_CHECKING:
    from .data import Dataset

CHECKPOINT_FORMAT = 1
TRAINER_STATE, OPTIMIZER_STATE, RNG_STATE = "trainer_state.json", "optimizer.safetensors", "rng_state.safetensors"
AVERAGE_STATE = "average.safetensors"
LAST, BEST = "last", "best"
# Arguments a resumed run may change: where it runs, where it saves, that it resumes, and when it gives up.
# A time budget is the session's own: a resumed run follows the plan its checkpoint made (``saved_plan``).
_FREE_ARGS = ("device", "checkpoint_dir", "resume", "patience", "time_budget")


@dataclass
class Checkpoint:
    """A run between two steps, as read back from its directory (see the module docstring for ``trainer``)."""

    trainer: dict  # trainer_state.json
    model: PromptClassifier  # last/
    best: PromptClassifier | None  # best/, None before the first evaluation
    optimizer: dict  # the optimizer's state_dict()
    rng: dict[str, torch.Tensor]  # from rng_state()
    average: dict[str, torch.Tensor] | None = None  # average.safetensors; None: the run kept none


# --------------------------------------------------------------------------------------------- identity
def comparable_args(args: TrainingArguments) -> dict:
    """The arguments a resumed run must share with the run it continues."""
    return {k: v for k, v in dataclasses.asdict(args).items() if k not in _FREE_ARGS}


def data_fingerprint(train: Dataset, val: Dataset | None) -> str:
    """A hash of the training and validation examples: a resumed run must see the very same data."""
    parts = [None if ds is None else [ds.texts, ds.text_pairs, ds.labels] for ds in (train, val)]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def _check_same_run(saved: dict, now: dict, directory: Path) -> None:
    """Refuse to resume when ``now`` (args, config, data_fingerprint, resolved) is not the run ``saved`` holds."""
    # An argument newer than the checkpoint was at its default there (a run interrupted before an upgrade resumes)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    was = {k: saved["args"].get(k, defaults.get(k)) for k in now["args"]}
    changed = [f"{k}={was[k]!r}" for k in now["args"] if was[k] != now["args"][k]]
    if changed:
        raise ConfigError(
            f"the checkpoint in {directory} was made with {', '.join(changed)}: resume with the same settings, "
            "or train anew without resume"
        )
    if saved["config"] != now["config"]:
        diff = [k for k, v in saved["config"].items() if now["config"].get(k) != v]
        raise ConfigError(
            f"the checkpoint in {directory} is of an adapter with other settings ({', '.join(diff)}): resume "
            "with the same settings, or train anew without resume"
        )
    if saved["data_fingerprint"] != now["data_fingerprint"]:
        raise ConfigError(
            f"the data differs from the data of the checkpoint in {directory}: resume with the same files, "
            "or train anew without resume"
        )
    if saved["resolved"]["processes"] != now["resolved"]["processes"]:
        raise ConfigError(
            f"the checkpoint was made with {saved['resolved']['processes']} processes: resume with as many"
        )
    if saved["resolved"] != now["resolved"]:  # the same settings and data, so only a changed base model
        raise ConfigError(
            f"the checkpoint in {directory} planned {saved['resolved']}, this run plans {now['resolved']}: "
            "has the base model changed? Train anew without resume"
        )


# --------------------------------------------------------------------------------------------- saving
def save_checkpoint(
    directory: Path,
    *,
    model: PromptClassifier,
    optimizer: dict,
    trainer: dict,
    rng: dict[str, torch.Tensor],
    best_weights: dict[str, torch.Tensor] | None = None,
    average: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a checkpoint to ``directory``, replacing the previous one only once it is complete.

    ``optimizer`` is the optimizer's ``state_dict()``, ``trainer`` the JSON part (see the module docstring) and
    ``rng`` from :func:`rng_state`. ``best/`` is the adapter of ``trainer["best_step"]``: when that is
    ``trainer["step"]``, ``model`` with ``best_weights`` (its ``state_dict()`` as kept; default: as it is), else the
    ``best/`` of the previous save (the run holds its best weights only in memory). ``average``: the run's moving
    average of its weights (``MovingAverage.state_dict()``), if it keeps one.
    """
    staging, old = _sibling(directory, ".saving"), _sibling(directory, ".old")
    _recover(directory)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging / LAST)
    if trainer["best_step"] is not None and trainer["best_step"] == trainer["step"]:
        _save_as(model, best_weights, staging / BEST)
    elif trainer["best_step"] is not None and (directory / BEST).is_dir():
        shutil.copytree(directory / BEST, staging / BEST)
    tensors, meta = _optimizer_tensors(optimizer)
    write_atomic(staging / OPTIMIZER_STATE, safetensors_bytes(tensors))
    write_atomic(staging / RNG_STATE, safetensors_bytes(rng))
    if average is not None:
        write_atomic(staging / AVERAGE_STATE, safetensors_bytes(average))
    write_json(staging / TRAINER_STATE, {**trainer, "format_version": CHECKPOINT_FORMAT, "optimizer": meta})
    shutil.rmtree(old, ignore_errors=True)  # _recover made sure it holds nothing needed
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)  # killed just before: `old` is complete, and _recover puts it back
    _fsync_directory(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def _save_as(model: PromptClassifier, weights: dict[str, torch.Tensor] | None, path: Path) -> None:
    """Save ``model`` with ``weights`` (a ``state_dict()``; None: its own) to ``path``, and leave it as it was."""
    if weights is None:
        model.save_pretrained(path)
        return
    live = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(weights)
    try:
        model.save_pretrained(path)
    finally:
        model.load_state_dict(live)


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(directory.name + suffix)


def _recover(directory: Path) -> None:
    """Put back the checkpoint a save left in ``.old`` when it was killed between its two renames."""
    old = _sibling(directory, ".old")
    if not (directory / TRAINER_STATE).is_file() and (old / TRAINER_STATE).is_file():
        shutil.rmtree(directory, ignore_errors=True)
        old.rename(directory)


def _fsync_directory(path: Path) -> None:
    # The renames themselves reach the disk (POSIX; a no-op where directories cannot be opened)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's ``state_dict`` split into tensors (for safetensors) and the rest (for JSON)."""
    tensors, scalars = {}, {}
    for idx, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The run's generator now (under the name the process-wide CPU state had: the two states are alike)."""
    return {"torch": generator.get_state()}


# --------------------------------------------------------------------------------------------- loading
def saved_plan(directory: Path) -> dict | None:
    """The plan (``resolved``) of the run checkpointed in ``directory``, or None when there is no readable one."""
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        try:
            return dict(json.loads((candidate / TRAINER_STATE).read_text(encoding="utf-8"))["resolved"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def load_checkpoint(directory: Path, now: dict, device: torch.device) -> Checkpoint:
    """The checkpoint in ``directory`` of the run whose identity is ``now`` (``args``, ``config``,
    ``data_fingerprint``, ``resolved``); a ConfigError when there is none, when it is of another run, or when it is
    damaged (a file truncated, garbled or missing).

    Its adapters are loaded onto ``device``.
    """
    if not (directory / TRAINER_STATE).is_file() and (_sibling(directory, ".old") / TRAINER_STATE).is_file():
        directory = _sibling(directory, ".old")  # a save was interrupted between two renames
    path = directory / TRAINER_STATE
    if not path.is_file():
        raise ConfigError(f"no checkpoint to resume in {directory}; train without resume to start anew")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"{TRAINER_STATE} holds no JSON object")
        if not isinstance(saved.get("format_version", 0), int):
            raise ValueError("format_version is not a number")
        if saved.get("format_version", 0) > CHECKPOINT_FORMAT:
            raise ConfigError(f"the checkpoint in {directory} was written by a newer ptuning")
        _check_progress(saved)
        _check_same_run(saved, now, directory)
        last = PromptClassifier.from_pretrained(directory / LAST, include_resume=True, device=device)
        best = None
        if (directory / BEST).is_dir():
            best = PromptClassifier.from_pretrained(directory / BEST, include_resume=True, device=device)
        optimizer = _optimizer_state(load_file(directory / OPTIMIZER_STATE), saved["optimizer"])
        rng = load_file(directory / RNG_STATE)
        if not isinstance(rng.get("torch"), torch.Tensor) or rng["torch"].dtype != torch.uint8:
            raise ValueError(f"{RNG_STATE} holds no generator state")
        average = load_file(directory / AVERAGE_STATE) if (directory / AVERAGE_STATE).is_file() else None
    except ConfigError:
        raise
    except (PtuningError, OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as error:
        raise damaged(directory, error) from None
    return Checkpoint(saved, last, best, optimizer, rng, average)


_NUMBER, _WHOLE = (int, float), int
_PROGRESS = {  # what a resumed run reads back from trainer_state.json, and the types it must have
    "step": _WHOLE, "epoch": _NUMBER, "history": list, "best_step": (_WHOLE, type(None)),
    "best_metric": (*_NUMBER, type(None)), "best_loss": (*_NUMBER, type(None)), "since_best": _WHOLE,
    "loss_sum": _NUMBER, "loss_count": _WHOLE, "elapsed_s": _NUMBER, "metric_name": (str, type(None)),
    "stopped_early": bool, "scheduler": dict, "optimizer": dict, "args": dict, "config": dict, "resolved": dict,
}  # fmt: skip


def _check_progress(saved: dict) -> None:
    wrong = [k for k, kind in _PROGRESS.items() if not isinstance(saved.get(k), kind)]
    wrong += [k for k in ("step", "since_best", "loss_count") if isinstance(saved.get(k), bool)]
    if wrong:
        raise ValueError(f"{TRAINER_STATE} has no valid {', '.join(dict.fromkeys(wrong))}")


def damaged(directory: Path, error: Exception) -> ConfigError:
    """The one line for a checkpoint whose files cannot be what a save wrote (truncated, garbled, missing)."""
    detail = str(error).splitlines()[0] if str(error) else ""
    return ConfigError(
        f"the checkpoint in {directory} is damaged ({type(error).__name__}: {detail}); train anew without resume"
    )


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def restore_rng(rng: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """Set the run's generator to the state ``rng`` saved."""
    generator.set_state(rng["torch"])
