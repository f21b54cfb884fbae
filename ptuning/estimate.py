"""How long a run will take, before it starts: its planned batches priced at this device's measured speed.

A training step costs about ``a·B·L + b·B·L²`` seconds for ``B`` examples padded to ``L`` tokens (the linear layers,
then attention), and an evaluation batch the same with its own, smaller coefficients (a forward pass alone).
``calibrate`` times a training step (forward and backward, no update) and an evaluation pass at two lengths (one when
every text is cut at the limit), the median of four tries each, on the run's own adapter, and solves for the
coefficients; ``estimate_run`` prices every planned batch with them.

Calibrations are kept for the process per backbone, device, method, prompt length and longest example, so that the
second estimate (the app's, when a setting changes) is immediate. Timing draws no random numbers from the run:
dropout in the timed steps uses a forked generator, and no weight changes.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .batching import length_grouped_batches
from .evaluation import task_loss
from .model import PromptClassifier

CALIBRATION_TOKENS = 8192
TIMED_TRIES = 4
_cache: dict[tuple, "Calibration"] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Calibration:
    """Seconds per ``B·L`` and per ``B·L²`` token, for a training step and for an evaluation batch."""

    train_linear: float
    train_quadratic: float
    eval_linear: float
    eval_quadratic: float

    def step_seconds(self, batch: int, length: int) -> float:
        return batch * length * (self.train_linear + self.train_quadratic * length)

    def eval_seconds(self, batch: int, length: int) -> float:
        return batch * length * (self.eval_linear + self.eval_quadratic * length)


@dataclass(frozen=True)
class Estimate:
    """The expected wall time of a run's training steps and evaluations (setup not included)."""

    train_s: float
    eval_s: float  # all evaluations together
    steps: int
    evaluations: int
    seconds_per_epoch: float
    seconds_per_evaluation: float

    @property
    def seconds(self) -> float:
        return self.train_s + self.eval_s

    def seconds_for(self, steps: int, evaluations: int) -> float:
        """The same run's time with another number of steps and evaluations (the batches cost the same)."""
        return self.train_s / max(self.steps, 1) * steps + self.seconds_per_evaluation * evaluations


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``1 h 05 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def calibrate(clf: PromptClassifier, examples: Sequence, batch_size: int) -> Calibration:
    """This device's speed for ``clf`` on batches like ``examples``'s (cached per backbone, device, method, prompt
    and longest example: a run its budget cut shorter is timed again at the cut)."""
    c = clf.config
    longest = max((len(e.input_ids) for e in examples), default=1)
    key = (clf.backbone.name, str(clf.device), c.method.value, c.num_virtual_tokens, c.pooling.value, c.task, longest,
           c.start_layer, c.bias_offsets, c.lora_rank)  # fmt: skip
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    by_length = sorted(examples, key=lambda e: len(e.input_ids))
    # The run's own batch size (a smaller batch costs more per token: measured 45 % more at 8 than at 32 on 2 CPU
    # cores), unless its longest batch would hold more than CALIBRATION_TOKENS tokens: then timing would take long.
    size = max(1, min(batch_size, len(by_length), CALIBRATION_TOKENS // longest))
    short = by_length[len(by_length) // 2 : len(by_length) // 2 + size] or by_length[:size]
    long = by_length[-size:]
    first = _time(clf, short)
    same = max(len(e.input_ids) for e in long) == first[0]  # every text cut at the limit: one length
    points = [first, first if same else _time(clf, long)]
    (l1, t1, e1), (l2, t2, e2) = points
    calibration = Calibration(*_fit(size, l1, t1, l2, t2), *_fit(size, l1, e1, l2, e2))
    with _cache_lock:
        _cache[key] = calibration
    return calibration


def _time(clf: PromptClassifier, examples: Sequence) -> tuple[int, float, float]:
    """``(padded length, seconds of a training step, seconds of an evaluation pass)``: the median of TIMED_TRIES
    tries (typical steps, not the luckiest: with the fastest of two, estimates of short-text runs were 24-77 % off,
    both ways, on a 2-core CPU). An adapter with a later start is timed as its run runs: from kept lower states."""
    inputs = clf.collate(list(examples))
    if clf.config.start_layer:
        inputs["start_states"] = clf.pad_states(clf.lower_states(list(examples)))
    length = inputs["input_ids"].shape[1]
    targets = torch.zeros(len(examples), dtype=torch.float32 if clf.config.task == "regression" else torch.long)
    targets = targets.to(clf.device)
    was_training = clf.training
    train_times, eval_times = [], []
    with torch.random.fork_rng(devices=[clf.device] if clf.device.type == "cuda" else []):
        for attempt in range(TIMED_TRIES + 1):  # the first warms up kernels and allocators, untimed
            clf.train()
            start = _now(clf)
            task_loss(clf(**inputs), targets, clf.config.task).backward()
            train_time = _now(clf) - start
            clf.zero_grad(set_to_none=True)
            clf.eval()
            start = _now(clf)
            with torch.inference_mode():
                clf(**inputs)
            eval_time = _now(clf) - start
            if attempt:
                train_times.append(train_time)
                eval_times.append(eval_time)
    clf.train(was_training)
    return length, statistics.median(train_times), statistics.median(eval_times)


def _now(clf: PromptClassifier) -> float:
    if clf.device.type == "cuda":
        torch.cuda.synchronize(clf.device)
    return time.perf_counter()


def _fit(batch: int, l1: int, t1: float, l2: int, t2: float) -> tuple[float, float]:
    """``(a, b)`` with ``t = batch·L·(a + b·L)`` through both points; linear only when the lengths are too close."""
    if l2 - l1 < max(8, 0.25 * l1):
        return max(t1, t2) / (batch * max(l1, l2)), 0.0
    # t/(B·L) = a + b·L: a line through two points, slopes below zero (noise) clamped
    y1, y2 = t1 / (batch * l1), t2 / (batch * l2)
    b = max(0.0, (y2 - y1) / (l2 - l1))
    a = max(y1 - b * l1, 0.0)
    if a == 0.0:
        b = y2 / l2
    return a, b


def estimate_run(
    calibration: Calibration,
    train_lengths: Sequence[int],
    val_lengths: Sequence[int] | None,
    *,
    batch_size: int,
    eval_batch_size: int,
    steps: int,
    steps_per_epoch: int,
    eval_every: int,
    processes: int = 1,
    seed: int = 0,
) -> Estimate:
    """Price ``steps`` training steps over batches like the run's own, and its evaluations."""
    batches = length_grouped_batches(list(train_lengths), batch_size, shuffle=True, seed=seed)
    costs = [calibration.step_seconds(len(b), max(train_lengths[i] for i in b)) for b in batches]
    # a step's global batch is batch_size x processes examples and each process runs its batch_size share of it, so
    # a step costs about one priced batch of batch_size, whatever the number of processes
    per_step = sum(costs) / max(len(costs), 1)
    epoch_s = per_step * steps_per_epoch
    train_s = per_step * steps
    evaluations = 0 if not val_lengths else math.ceil(steps / eval_every)
    eval_once = 0.0
    if val_lengths:
        for b in length_grouped_batches(list(val_lengths), eval_batch_size):
            eval_once += calibration.eval_seconds(len(b), max(val_lengths[i] for i in b))
        eval_once /= processes
    return Estimate(train_s, evaluations * eval_once, steps, evaluations, epoch_s, eval_once)
