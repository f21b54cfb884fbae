"""Training: the prompt and head of a PromptClassifier on a frozen backbone, with Accelerate for devices.

    Dataset -> train() -> TrainResult(model, metrics, state)

One run (a ``Trainer``, minGPT-style: small named steps, callbacks for progress): build (or load) the adapter, hold
out a validation split, tokenise both sets once, plan the steps; then AdamW over the trainable parameters only
(prompt/encoder/deep tables at ``lr``, the head at ``head_lr``), linear warm-up and decay, gradient clipping, an
evaluation every epoch (or ``eval_steps``), early stopping on the primary metric, and the best weights restored at
the end (with fewer validation texts than ``MIN_SELECTION_EXAMPLES`` and no patience given: the weights at the stop,
as the best of a few noisy evaluations is mostly luck). A cancel event stops the run between two steps and still
returns the adapter it would keep so far.

With ``checkpoint_dir`` every evaluation also writes a checkpoint (``checkpoints.py``), and ``resume=True``
continues from it: a run cancelled and resumed ends with the same adapter as one that was never interrupted.

Several processes (``accelerate launch -m ptuning train ...``, one per GPU): each step takes one global batch of
``batch_size`` x processes examples, the very batch a single process with that batch size would take, and each
process computes the loss of its share of it, scaled so that the gradients averaged across processes are the whole
batch's. The adapter is then the one a single process trains with the same global batch, up to float rounding; only
head dropout differs, since each process draws its own masks.

The arguments live in ``training_args.py`` and scoring in ``evaluation.py``; both are importable from here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .averaging import MovingAverage
from .backbones import default_device, load_backbone
from .batching import length_grouped_batches
from .checkpoints import (
    comparable_args,
    damaged,
    data_fingerprint,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
    saved_plan,
)
from .config import PromptConfig
from .data import Dataset, check_trainable, label_distribution, split_dataset
from .errors import ConfigError
from .estimate import calibrate
from .evaluation import align_labels, evaluate, predict_logits, score_logits, task_loss
from .metrics import primary_metric
from .model import PROMPT_SHAPE, PromptClassifier, start_from
from .plan import AUTOMATIC, Plan, Workload, auto_lora_rank, auto_start_layer, lr_schedule, make_plan
from .seeding import dropout_from, run_generator
from .training_args import (
    HEAD_LR,
    MAX_AUTO_EPOCHS,
    MIN_AUTO_EPOCHS,
    MIN_SELECTION_EXAMPLES,
    PATIENCE,
    PROMPT_LR,
    STEP_BUDGET,
    TrainingArguments,
    auto_epochs,
    auto_max_length,
)

__all__ = [
    "HEAD_LR",
    "MAX_AUTO_EPOCHS",
    "MIN_AUTO_EPOCHS",
    "PROMPT_LR",
    "STEP_BUDGET",
    "Callback",
    "Plan",
    "TqdmCallback",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingArguments",
    "align_labels",
    "auto_epochs",
    "auto_max_length",
    "evaluate",
    "lr_schedule",
    "train",
]

# The memory a run may keep lower-layer states in (``lower_states``): all-MiniLM-L6-v2 keeps 1.5 KB a token, so 2,000
# sentences of ~40 tokens take ~120 MB and 2 GiB hold about 1.4 M tokens; what does not fit is recomputed each step.
LOWER_STATES_BYTES = 2 * 2**30
_TRUNCATED = " were truncated"  # marks the note of how many training examples were cut
_HISTORY_KEYS = ("step", "epoch", "train_loss", "val_loss")  # an evaluation's entry: these, then its metrics


# --------------------------------------------------------------------------------------------- progress
@dataclass
class TrainState:
    """Where a run stands; callbacks read it. ``epoch`` counts epochs done, fractions included (2.5 = mid third)."""

    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    epochs: int = 0
    loss: float | None = None  # mean training loss since the last evaluation
    learning_rate: float = 0.0  # the prompt's current learning rate
    elapsed_s: float = 0.0
    eta_s: float | None = None
    history: list[dict] = field(default_factory=list)  # per evaluation: step, epoch, train_loss, val_loss, metrics
    metric_name: str | None = None
    best_metric: float | None = None  # of the adapter kept so far (see ``kept``)
    best_step: int | None = None
    kept: str = "best"  # "best": the best evaluation's adapter; "last": the last one (too few validation texts)
    examples_per_s: float = 0.0
    cancelled: bool = False
    stopped_early: bool = False
    budget_reached: bool = False  # stopped at args.time_budget
    # the expected time of the steps and evaluations: priced in advance (``estimate.py``) when a time budget needs it
    # (or ``plan_training``), else made from the run's own first steps and evaluation (None until then)
    estimated_s: float | None = None
    max_length: int = 0  # tokens an example is cut to (prompt and special tokens included)
    warnings: list[str] = field(default_factory=list)  # about the data: duplicates, truncated texts...


class Callback:
    """Hooks a run calls on the main process; override the ones you need (minGPT-style)."""

    def on_train_begin(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState) -> None:
        pass

    def on_evaluate(self, state: TrainState, metrics: dict) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass


class TqdmCallback(Callback):
    """A progress bar over the steps (on stderr) and one line per evaluation."""

    def __init__(self, file=None):
        self.file = file
        self.bar = None

    def on_train_begin(self, state: TrainState) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=state.total_steps, initial=state.step, unit="step", desc="training", file=self.file or sys.stderr,
            dynamic_ncols=True,
        )  # fmt: skip

    def on_step_end(self, state: TrainState) -> None:
        self.bar.update(state.step - self.bar.n)
        self.bar.set_postfix(
            epoch=f"{state.epoch:.1f}/{state.epochs}", loss=f"{state.loss:.4f}", lr=f"{state.learning_rate:.1e}",
            refresh=False,
        )  # fmt: skip

    def on_evaluate(self, state: TrainState, metrics: dict) -> None:
        entry = state.history[-1]
        line = f"step {entry['step']} (epoch {entry['epoch']:.1f}):"
        if entry["train_loss"] is not None:
            line += f" train loss {entry['train_loss']:.4f},"
        line += f" val loss {entry['val_loss']:.4f}, {state.metric_name} {primary_metric(metrics)[1]:.4f}"
        if state.kept == "best":
            line += f" (best {state.best_metric:.4f} at step {state.best_step})"
        self.bar.write(line, file=self.file or sys.stderr)

    def on_train_end(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class TrainResult:
    """A trained adapter (best weights restored), its best validation metrics and how the run went."""

    model: PromptClassifier
    metrics: dict
    state: TrainState
    out_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- the run
def train(
    data: Dataset,
    *,
    eval_data: Dataset | None = None,
    model: PromptClassifier | None = None,
    config: PromptConfig | dict | None = None,
    args: TrainingArguments | None = None,
    callbacks: Sequence[Callback] = (),
    cancel: threading.Event | Callable[[], bool] | None = None,
    out_dir: str | Path | None = None,
    init_adapter: str | Path | None = None,
    description: str | None = None,
    init_from: str | Path | PromptClassifier | None = None,
) -> TrainResult:
    """Train a prompt adapter on ``data``; returns the adapter with its best validation weights.

    The adapter is ``model`` (trained in place), or loaded from ``init_adapter`` (a saved adapter, to train
    further), or built from ``config`` (labels and task come from the data); ``init_from`` (an adapter, its
    directory or Hub repo id) starts a new one's prompt at that adapter's (``model.start_from``: same base model and
    prompt shape; its head too when the labels are the same). Without ``eval_data``,
    ``args.val_split`` of the data is held out. ``cancel`` (an Event or a function) stops the run between two steps.
    ``out_dir`` receives the adapter files; ``description`` (of the data) goes into the model card.

    >>> result = train(load_dataset("reviews.csv"), config={"method": "p-tuning"}, out_dir="runs/reviews")
    >>> result.metrics["accuracy"], result.state.best_step
    (0.86, 240)
    """
    started = time.monotonic()  # a time budget counts loading and tokenising too
    check_trainable(data)
    args = args or TrainingArguments()
    accelerator, device = _accelerator(args.device, model)
    # The run's own generator, never the process's: runs at once in one process each give their seed's adapter
    generator = run_generator(args.seed)
    clf, fresh = _build_adapter(data, model, config, init_adapter, device, generator, init_from)
    run_data = _run_data(data, eval_data, clf, args)
    if fresh and clf.config.task == "regression":
        _start_head_at(clf, float(np.mean(run_data.train.labels)))
    deadline = started + args.time_budget if args.time_budget else None
    plan, run_data = plan_run(clf, run_data, args, accelerator.num_processes, deadline)
    if clf.config.start_layer:
        run_data = with_lower_states(clf, run_data)
    trainer = Trainer(
        clf, run_data, plan, args, accelerator=accelerator, callbacks=callbacks, cancel=cancel, deadline=deadline,
        generator=generator,
    )
    return trainer.run(out_dir, description)


def plan_training(
    data: Dataset,
    *,
    eval_data: Dataset | None = None,
    config: PromptConfig | dict | None = None,
    args: TrainingArguments | None = None,
) -> TrainState:
    """What ``train`` with these arguments would do, without a step: the state it would start from, with its plan
    (``total_steps``, ``epochs``) fitted to any time budget, and ``estimated_s``. For a UI, before Train is pressed.

    >>> plan_training(load_dataset("reviews.csv"), args=TrainingArguments(time_budget=120)).estimated_s
    94.3
    """
    started = time.monotonic()
    check_trainable(data)
    args = dataclasses.replace(args or TrainingArguments(), resume=False, checkpoint_dir=None)
    accelerator, device = _accelerator(args.device, None)
    generator = run_generator(args.seed)
    clf, _ = _build_adapter(data, None, config, None, device, generator)
    run_data = _run_data(data, eval_data, clf, args)
    deadline = started + args.time_budget if args.time_budget else None
    plan, run_data = plan_run(clf, run_data, args, accelerator.num_processes, deadline, price=True)
    return _start_state(plan, run_data)


def plan_run(
    clf: PromptClassifier, data: RunData, args: TrainingArguments, processes: int, deadline: float | None,
    price: bool = False,
) -> tuple[Plan, RunData]:
    """The plan of a run (``plan.make_plan``) and its data, laid out again when the plan cuts the texts shorter.

    The device is timed (``estimate.calibrate``: a few steps and evaluations) only when the plan must fit a time
    budget ``deadline`` (a ``time.monotonic()`` instant) or ``price`` asks for an estimate; a run without either
    estimates its time from its own first steps instead.
    """
    saved = None
    if args.resume and args.checkpoint_dir is not None:
        saved = saved_plan(Path(args.checkpoint_dir))
    costs = calibrate(clf, data.train_examples, args.batch_size) if price or deadline is not None else None
    val = data.validation()[0] if data.val_examples is not None else None
    work = Workload(
        tuple(len(e.input_ids) for e in data.train_examples), None if val is None else tuple(len(e.input_ids) for e in val),
        data.max_length, clf.config.method, processes, clf.config.start_layer, clf.config.lora_rank,
        clf.backbone.num_layers,
    )  # fmt: skip
    left = None if deadline is None else deadline - time.monotonic()
    plan = make_plan(args, work, costs=costs, seconds_left=left, saved=saved)
    if plan.max_length < data.max_length:
        data = _reencoded(data, clf, plan.max_length, f"not the automatic {data.max_length}, {plan.cut}")
    return plan, data


def with_lower_states(clf: PromptClassifier, data: RunData, layer: int | None = None) -> RunData:
    """``data`` with the states at ``layer`` (default: the adapter's start layer) of its training examples kept, then
    of its validation examples, within LOWER_STATES_BYTES in all."""
    train = lower_states(clf, data.train_examples, LOWER_STATES_BYTES, layer=layer)
    if data.val_examples is None:
        return dataclasses.replace(data, lower=train)
    used = _state_bytes(clf, sum(s.shape[0] for s in train if s is not None))
    val = lower_states(clf, data.val_examples, max(0, LOWER_STATES_BYTES - used), layer=layer)
    return dataclasses.replace(data, lower=train, val_lower=val)


def _state_bytes(clf: PromptClassifier, tokens: int) -> int:
    """The memory the lower-layer states of ``tokens`` token positions take (the backbone's width and dtype)."""
    return tokens * clf.backbone.hidden_size * (torch.finfo(clf.backbone.model.dtype).bits // 8)


def lower_states(
    clf: PromptClassifier, examples: Sequence, max_bytes: int = LOWER_STATES_BYTES, layer: int | None = None
) -> list:
    """What the frozen layers below ``layer`` (default: ``clf``'s start layer) make of each training example, computed
    once for the run: the longest examples first while they fit into ``max_bytes``, None for the rest (their steps
    compute them)."""
    out: list = [None] * len(examples)
    kept, used = [], 0
    for i in sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids)):
        size = _state_bytes(clf, len(examples[i].input_ids))
        if used + size <= max_bytes:
            kept.append(i)
            used += size
    kept.sort(key=lambda i: len(examples[i].input_ids))  # passes over texts of like lengths pad little
    for i, states in zip(kept, clf.lower_states([examples[i] for i in kept], layer=layer)):
        out[i] = states
    return out


def lower_parts(clf: PromptClassifier, layer: int) -> list[tuple[str, slice]]:
    """``(parameter name, rows)`` of the adapter's trained parts below ``layer``: the input prompt, the deep tables of
    the layers below it, their low-rank updates and bias offsets (not the head)."""
    out = [(name, slice(None)) for name, p in clf.prompt.named_parameters(prefix="prompt") if p.requires_grad]
    if clf.deep is not None and layer > 1:
        out.append(("deep.tables", slice(0, layer - 1)))
    for prefix, part, lists in (("low_rank", clf.low_rank, ("a", "b")), ("offsets", clf.offsets, ("values",))):
        below = [i for i, name in enumerate(part.names) if int(name.split(".")[0]) < layer] if part is not None else []
        out += [(f"{prefix}.{k}.{i}", slice(None)) for i in below for k in lists]
    return out


def _start_state(plan: Plan, data: RunData) -> TrainState:
    """The progress of a run that has not taken a step."""
    return TrainState(total_steps=plan.total_steps, epochs=plan.epochs, warnings=data.warnings,
                      estimated_s=plan.estimated_s, max_length=plan.max_length)  # fmt: skip


@dataclass
class RunData:
    """The examples of one run: labels in the adapter's order, validation held out, each set tokenised once."""

    full: Dataset  # all the training data given (what the adapter's info describes)
    train: Dataset
    val: Dataset | None
    max_length: int  # given, or chosen from the training examples' lengths
    train_examples: list
    val_examples: list | None
    targets: torch.Tensor  # on the adapter's device
    val_targets: torch.Tensor | None  # on the CPU, beside the logits gathered from every process
    warnings: list[str]  # about the data: duplicates, a fallback split, truncated texts...
    val_sample: list[int] | None = None  # the validation examples evaluations read during training (None: all)
    # per training (and validation) example, what the layers below the adapter's start_layer make of it (None: not
    # kept, computed in the step that needs it); None altogether when the adapter starts at layer 0
    lower: list | None = None
    val_lower: list | None = None

    def validation(self, full: bool = False) -> tuple[list, torch.Tensor, list]:
        """``(examples, targets, labels)`` an evaluation reads: the sample during training, all when ``full``."""
        if full or self.val_sample is None:
            return self.val_examples, self.val_targets, self.val.labels
        idx = self.val_sample
        return [self.val_examples[i] for i in idx], self.val_targets[idx], [self.val.labels[i] for i in idx]


@dataclass
class _Record:
    """What the trainer keeps besides the public TrainState: the best weights, and the loss since the last
    evaluation. The fields but ``best_weights`` are saved in checkpoints under their own names."""

    best_weights: dict | None = None
    best_loss: float = math.inf  # the validation loss of the best evaluation (it breaks ties on the metric)
    since_best: int = 0  # evaluations since the best one
    loss_sum: float = 0.0
    loss_count: int = 0


@dataclass
class _Clock:
    """Times the run as this process sees it; a resumed run starts from the time its checkpoint had."""

    began: float = 0.0  # perf_counter() when this session of the run started
    first_step: int = 0
    before: float = 0.0  # seconds the run had taken before this session
    seen: int = 0  # training examples since, over all processes

    def start(self, state: TrainState) -> None:
        self.began, self.first_step, self.before, self.seen = time.perf_counter(), state.step, state.elapsed_s, 0

    def update(self, state: TrainState, examples: int = 0) -> None:
        self.seen += examples
        session = time.perf_counter() - self.began
        state.elapsed_s = self.before + session
        state.examples_per_s = self.seen / session if session > 0 else 0.0
        steps = state.step - self.first_step
        state.eta_s = session / steps * (state.total_steps - state.step) if steps else None


# The progress a checkpoint keeps of a TrainState (the rest is recomputed or belongs to one session)
_SAVED_STATE = ("step", "epoch", "history", "metric_name", "best_metric", "best_step", "elapsed_s", "stopped_early")


class Trainer:
    """The loop of one training run, in small named steps (minGPT-style); callbacks hear how it goes.

    ``train()`` prepares what a run starts from (the adapter, its data, its plan, the accelerator) and hands it over:

    >>> plan, run_data = plan_run(clf, run_data, args, processes=1, deadline=None)
    >>> trainer = Trainer(clf, run_data, plan, args, accelerator=Accelerator())
    >>> trainer.run(out_dir="runs/reviews").metrics["accuracy"]
    0.86

    The trainer runs the plan it is given and never changes it. The whole state of the run is made here, in order: the
    optimizer and scheduler, the progress; then, with ``args.resume``, the checkpoint overwrites what it saved.
    ``run()`` repeats ``train_step`` (and ``evaluate`` / ``write_checkpoint``) until the plan is done, the run is
    cancelled or stops early, then
    ``finish``es. Dropout masks come from ``generator`` (the one the adapter was drawn from; default: a new one
    seeded with ``args.seed``), never from the process-wide generator.
    """

    def __init__(
        self,
        clf: PromptClassifier,
        data: RunData,
        plan: Plan,
        args: TrainingArguments,
        *,
        accelerator,
        callbacks: Sequence[Callback] = (),
        cancel: threading.Event | Callable[[], bool] | None = None,
        deadline: float | None = None,
        generator: torch.Generator | None = None,
    ):
        self.clf, self.data, self.plan, self.args, self.accelerator = clf, data, plan, args, accelerator
        self.callbacks, self.cancel, self.deadline = list(callbacks), cancel, deadline
        self.generator = generator if generator is not None else run_generator(args.seed)
        self.optimizer = _optimizer(clf, plan, args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_schedule(plan.total_steps,
                                                                                      plan.warmup_steps))  # fmt: skip
        self.state = _start_state(plan, data)
        self.patience, keep_last = _selection(args.patience, data)
        self.state.kept = "last" if keep_last else "best"
        self.record = _Record()
        self.clock = _Clock()
        self.last_eval_s: float | None = None
        # what evaluations score and the run keeps: the moving average of the weights, or the weights themselves
        self.average = MovingAverage(clf, plan.ema) if plan.ema else None
        self.pass_start = clf.config.start_layer  # the layer steps start at: higher once the lower layers freeze
        self.frozen_rows: torch.Tensor | None = None  # the deep tables below plan.freeze_layer, once frozen
        self.frozen_val: list | None = None  # the validation examples' states at plan.freeze_layer, once frozen
        if args.resume:
            resume_run(self)
        self.state.learning_rate = self.scheduler.get_last_lr()[0]
        # The adapter is prepared, not the backbone: under DDP only the adapter's parameters are synchronised. Steps
        # go through the wrapped pair; checkpoints read the optimizer itself.
        self.wrapped_model, self.wrapped_optimizer = accelerator.prepare(clf, self.optimizer)

    # ------------------------------------------------------------------------------------------ the loop
    def run(self, out_dir: str | Path | None = None, description: str | None = None) -> TrainResult:
        """Train until the plan is done, the run is cancelled or stops early; return the best adapter."""
        state, plan = self.state, self.plan
        self.trigger("on_train_begin", state)
        self.clock.start(state)
        saved_step = state.step if self.args.resume else None
        if plan.freeze_step and state.step >= plan.freeze_step:
            self.freeze_lower()  # a run resumed past the freeze
        while state.step < plan.total_steps and not (state.cancelled or state.stopped_early or state.budget_reached):
            for batch in self.epoch_batches():
                if self.cancelled():
                    state.cancelled = True
                    break
                if self.out_of_time():
                    state.budget_reached = True
                    break
                self.train_step(batch)
                if state.step == plan.freeze_step:
                    self.freeze_lower()  # before this step's evaluation, which then runs the upper layers only
                if state.step % plan.eval_every == 0 or state.step == plan.total_steps:
                    self.evaluate()
                    state.stopped_early = bool(self.patience) and self.record.since_best >= self.patience
                    write_checkpoint(self)
                    saved_step = state.step
                    if state.stopped_early:
                        break
                if state.step >= plan.total_steps:  # a plan may end inside an epoch (a time budget's part of one)
                    break
        if state.budget_reached and saved_step != state.step:
            self.evaluate()  # the steps since the last evaluation count: the best adapter may be the last one
            write_checkpoint(self)
        elif state.cancelled and saved_step != state.step:
            write_checkpoint(self)  # resuming continues from this very step
        return self.finish(out_dir, description)

    def out_of_time(self) -> bool:
        """Whether one more step, and the evaluation that must follow it, would end past the time budget."""
        if self.deadline is None:
            return False
        steps_done = self.state.step - self.clock.first_step
        if steps_done:
            step_s = (time.perf_counter() - self.clock.began) / steps_done
        else:
            step_s = self.plan.estimate.train_s / max(self.plan.estimate.steps, 1)
        return time.monotonic() + step_s + self.eval_seconds > self.deadline

    @property
    def eval_seconds(self) -> float:
        """One evaluation's time: the last one measured, else the estimate."""
        if self.last_eval_s is not None or self.plan.estimate is None:
            return self.last_eval_s or 0.0
        return self.plan.estimate.seconds_per_evaluation

    def epoch_batches(self) -> list[list[int]]:
        """The global batches of the current epoch, from the current step on: shuffled by epoch and grouped by
        length, ``batch_size`` x processes examples each (with one process, this run's batches), so the same data
        and seed give the same batches whatever the number of processes. Each process trains on its share."""
        state, plan = self.state, self.plan
        lengths = [len(e.input_ids) for e in self.data.train_examples]
        seed = self.args.seed + state.step // plan.steps_per_epoch
        size = self.args.batch_size * plan.processes
        batches = length_grouped_batches(lengths, size, shuffle=True, seed=seed)
        return batches[state.step % plan.steps_per_epoch :]  # one batch a step: steps_per_epoch = len(batches)

    def cancelled(self) -> bool:
        c = self.cancel
        flag = bool(c is not None and (c.is_set() if hasattr(c, "is_set") else c()))
        if self.accelerator.num_processes > 1:  # every process stops at the same step, or DDP would hang
            t = torch.tensor([float(flag)], device=self.clf.device)
            flag = bool(self.accelerator.reduce(t, reduction="sum").item() > 0)
        return flag

    def train_step(self, batch: list[int]) -> None:
        """One optimizer step on the global batch ``batch`` (training example indices)."""
        clf, acc, state, record = self.clf, self.accelerator, self.state, self.record
        clf.train()
        # this run's masks, whatever other runs in the process draw; the backbone's drop in this step only
        with dropout_from(self.generator, backbone=self.args.backbone_dropout):
            if acc.num_processes == 1:
                inputs = self.inputs(batch)
                loss = task_loss(self.wrapped_model(**inputs), self.data.targets[batch], clf.config.task)
                reported = loss
            else:
                loss = self._share_loss(batch)
                reported = acc.reduce(loss.detach(), reduction="mean")  # the whole batch's mean loss
        acc.backward(loss)
        if self.args.max_grad_norm:
            acc.clip_grad_norm_(clf.parameters(), self.args.max_grad_norm)
        self.wrapped_optimizer.step()
        if self.frozen_rows is not None:  # zero gradients, but Adam's momentum would still move them
            with torch.no_grad():
                clf.deep.tables[: len(self.frozen_rows)].copy_(self.frozen_rows)
        self.scheduler.step()
        self.wrapped_optimizer.zero_grad(set_to_none=True)
        if self.average is not None:
            self.average.update(state.step)

        record.loss_sum += reported.item()
        record.loss_count += 1
        state.step += 1
        state.epoch = state.step / self.plan.steps_per_epoch
        state.loss = record.loss_sum / record.loss_count
        state.learning_rate = self.scheduler.get_last_lr()[0]
        self.clock.update(state, len(batch))
        self.trigger("on_step_end", state)

    def _share_loss(self, batch: list[int]) -> torch.Tensor:
        """This process's part of the loss of the global ``batch``: the sum over its share (every processes-th
        example, so shares are alike in length) times processes / len(batch). DDP averages the gradients over the
        processes, which makes them the gradients of the whole batch's mean loss. A process whose share is empty
        (a last batch smaller than the process count) still runs one example, at weight 0: DDP needs every process
        to take part in every backward pass."""
        acc, clf = self.accelerator, self.clf
        mine = batch[acc.process_index :: acc.num_processes]
        weight = acc.num_processes / len(batch) if mine else 0.0
        mine = mine or batch[:1]
        logits = self.wrapped_model(**self.inputs(mine))
        return task_loss(logits, self.data.targets[mine], clf.config.task, reduction="sum") * weight

    def inputs(self, batch: list[int]) -> dict:
        """The model's inputs for training examples ``batch``: collated, with the states the pass starts from when the
        adapter starts above layer 0 (kept ones, or computed now)."""
        examples = [self.data.train_examples[i] for i in batch]
        inputs = self.clf.collate(examples)
        if self.data.lower is not None:
            kept = [self.data.lower[i] for i in batch]
            inputs["start_states"] = self.clf.start_states(examples, kept, layer=self.pass_start)
            inputs["start_layer"] = self.pass_start
        return inputs

    def freeze_lower(self) -> None:
        """Stop training the adapter's parts below ``plan.freeze_layer`` (FreezeOut): they take their moving
        average's values (what evaluations score; the average of a weight that no longer moves stays put), and what
        those layers make of each training text is computed once, so that every later step runs only the layers
        above. A run resumed past ``plan.freeze_step`` computes the states again from the weights it restored."""
        clf, layer, data = self.clf, self.plan.freeze_layer, self.data
        params = dict(clf.named_parameters())
        # at the freeze step only (a run resumed exactly there copies again what its checkpoint already holds)
        if self.average is not None and self.state.step == self.plan.freeze_step:
            with torch.no_grad():
                for name, rows in lower_parts(clf, layer):
                    if name in self.average.values:
                        params[name][rows].copy_(self.average.values[name][rows])
        if clf.deep is not None and layer > 1:
            self.frozen_rows = clf.deep.tables[: layer - 1].detach().clone()
        frozen = with_lower_states(clf, data, layer)
        self.data = dataclasses.replace(data, lower=frozen.lower)
        # evaluations during training start there too; the last, full one keeps the adapter's own start's states
        # (the adapter it scores may be from before the freeze)
        self.frozen_val = frozen.val_lower  # None without validation texts
        self.pass_start = layer

    def evaluate(self) -> None:
        """Score the validation set; keep the weights when they are the best so far (every evaluation's, when the run
        keeps the latest)."""
        state, record, clf, data = self.state, self.record, self.clf, self.data
        train_loss = record.loss_sum / record.loss_count if record.loss_count else None
        record.loss_sum, record.loss_count = 0.0, 0
        if data.val_examples is None:
            return
        began = time.perf_counter()
        with self.kept_weights():
            val_loss, metrics = self.score(full=False)
            name, value, higher = primary_metric(metrics)
            # "last": every evaluation's adapter is kept (too few texts to choose by); patience counts from the best
            if state.kept == "last" or _is_better(value, val_loss, state.best_metric, record.best_loss, higher):
                state.best_metric, state.best_step, record.best_loss = value, state.step, val_loss
                record.best_weights = _copy_weights(clf)
        entry = {"step": state.step, "epoch": round(state.epoch, 4), "train_loss": train_loss, "val_loss": val_loss}
        state.history.append({**entry, **metrics})
        state.metric_name = name
        record.since_best = _evaluations_since_best(state.history)
        self.last_eval_s = time.perf_counter() - began
        if state.estimated_s is None:
            self.estimate_from_steps(began)
        self.trigger("on_evaluate", state, metrics)

    def estimate_from_steps(self, eval_began: float) -> None:
        """A run planned without timing the device estimates its time at its first evaluation: the steps so far and
        that evaluation, extended to the whole plan."""
        state = self.state
        steps_s = eval_began - self.clock.began
        state.estimated_s = self.plan.seconds_from_run(self.clock.first_step, state.step, steps_s, self.last_eval_s)

    def kept_weights(self):
        """A block in which the adapter's weights are those the run evaluates and keeps: their moving average (when
        the run keeps one), the weights as trained after it."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def score(self, full: bool) -> tuple[float, dict]:
        """``(loss, metrics)`` of the adapter as it stands on the validation sample, or on all of it. An evaluation
        in training after the lower layers froze starts from their kept states (the last one, ``full``, of whatever
        adapter the run kept, from the adapter's own start)."""
        examples, targets, labels = self.data.validation(full)
        lower, layer = self.data.val_lower, None
        if self.frozen_val is not None and not full:
            lower, layer = self.frozen_val, self.pass_start
        if lower is not None and not full and self.data.val_sample is not None:
            lower = [lower[i] for i in self.data.val_sample]
        logits = predict_logits(self.clf, examples, self.plan.eval_batch_size, self.accelerator, lower, layer)
        return float(task_loss(logits, targets, self.clf.config.task)), score_logits(self.clf, labels, logits)

    def trigger(self, hook: str, *args) -> None:
        """Call ``hook`` on every callback that has it (on the main process only)."""
        if self.accelerator.is_main_process:
            for cb in self.callbacks:
                fn = getattr(cb, hook, None)
                if fn is not None:
                    fn(*args)

    # ------------------------------------------------------------------------------------------ the result
    def finish(self, out_dir: str | Path | None, description: str | None) -> TrainResult:
        """Restore the best weights, describe the run in the adapter's info, save it to ``out_dir``."""
        clf, state = self.clf, self.state
        if self.data.val_examples is not None and not state.history:
            self.evaluate()  # cancelled before the first evaluation: measure what there is
        if self.record.best_weights is not None:
            clf.load_state_dict(self.record.best_weights)
        elif self.average is not None:  # no validation: the average at the last step
            self.average.apply()
        clf.eval()
        self.clock.update(state)
        self.trigger("on_train_end", state)

        best = next((h for h in state.history if h["step"] == state.best_step), None)
        metrics = {k: v for k, v in best.items() if k not in _HISTORY_KEYS} if best else {}
        if best and self.data.val_sample is not None:  # chosen on the sample; what it scores is measured on all
            _, metrics = self.score(full=True)
        clf.info = run_info(self, metrics, description)
        saved = None
        if out_dir is not None:
            if self.accelerator.is_main_process:
                clf.save_pretrained(out_dir)
            self.accelerator.wait_for_everyone()
            saved = Path(out_dir)
        return TrainResult(clf, metrics, state, saved, self.data.warnings)


# --------------------------------------------------------------------------------------------- checkpoints, the record
def run_identity(t: Trainer) -> dict:
    """What a resumed run must share with the run it continues (``checkpoints.load_checkpoint`` checks it)."""
    return {
        "args": comparable_args(t.args),
        "config": t.clf.config.to_dict(),
        "data_fingerprint": data_fingerprint(t.data.train, t.data.val),
        "resolved": t.plan.resolved(),
    }


def write_checkpoint(t: Trainer) -> None:
    """Write the run as it stands to ``args.checkpoint_dir`` (nothing without one)."""
    if t.args.checkpoint_dir is None:
        return
    if t.accelerator.is_main_process:
        state, record = t.state, t.record
        trainer = {
            **run_identity(t),
            **{k: getattr(state, k) for k in _SAVED_STATE},
            "seed": t.args.seed,
            "finished": state.step >= t.plan.total_steps or state.stopped_early,
            "best_loss": record.best_loss if math.isfinite(record.best_loss) else None,
            "since_best": record.since_best,
            "loss_sum": record.loss_sum,
            "loss_count": record.loss_count,
            "scheduler": t.scheduler.state_dict(),
        }
        save_checkpoint(
            Path(t.args.checkpoint_dir), model=t.clf, optimizer=t.optimizer.state_dict(), trainer=trainer,
            rng=rng_state(t.generator), best_weights=record.best_weights,
            average=t.average.state_dict() if t.average is not None else None,
        )  # fmt: skip
    t.accelerator.wait_for_everyone()


def resume_run(t: Trainer) -> None:
    """Continue the run saved in ``args.checkpoint_dir``: its weights, optimizer, scheduler, progress and RNG."""
    if t.args.checkpoint_dir is None:
        raise ConfigError("resume needs checkpoint_dir: the folder the run saved its checkpoints in")
    directory = Path(t.args.checkpoint_dir)
    saved = load_checkpoint(directory, run_identity(t), t.clf.device)
    try:
        t.clf.load_state_dict(saved.model.state_dict())
        if saved.best is not None:
            t.record.best_weights = _copy_weights(saved.best)
        t.optimizer.load_state_dict(saved.optimizer)
        t.scheduler.load_state_dict(saved.trainer["scheduler"])
        for key in _SAVED_STATE:
            setattr(t.state, key, saved.trainer[key])
        best_loss = saved.trainer["best_loss"]
        t.record.best_loss = best_loss if best_loss is not None else math.inf
        t.record.since_best = saved.trainer["since_best"]
        t.record.loss_sum, t.record.loss_count = saved.trainer["loss_sum"], saved.trainer["loss_count"]
        restore_rng(saved.rng, t.generator)
        if t.average is not None and saved.average is not None:
            t.average.load_state_dict(saved.average)
        elif t.average is not None:  # a checkpoint from before averaging existed: the average starts here
            t.average = MovingAverage(t.clf, t.plan.ema)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # fields of the wrong shape
        raise damaged(directory, error) from None


def run_info(t: Trainer, metrics: dict, description: str | None) -> dict:
    """What the adapter's files (and model card) record of this run."""
    state, plan, args = t.state, t.plan, t.args
    info = {
        "metrics": metrics,
        "training": {
            "epochs": plan.epochs,
            "steps": state.step,
            "total_steps": plan.total_steps,
            "learning_rate": plan.lr,
            "head_learning_rate": plan.head_lr,
            **({"bias_learning_rate": plan.bias_lr} if t.clf.offsets is not None else {}),
            **({"lora_learning_rate": plan.lora_lr} if t.clf.low_rank is not None else {}),
            "batch_size": args.batch_size,
            "warmup_ratio": args.warmup_ratio,
            "weight_decay": args.weight_decay,
            "backbone_dropout": args.backbone_dropout,
            "ema": plan.ema,
            **({"freeze_step": plan.freeze_step, "freeze_layer": plan.freeze_layer} if plan.freeze_step else {}),
            "max_grad_norm": args.max_grad_norm,
            "max_length": plan.max_length,
            "seed": args.seed,
            "patience": t.patience,
            "kept": state.kept,
            "best_step": state.best_step,
            "stopped_early": state.stopped_early,
            "cancelled": state.cancelled,
            "n_train": len(t.data.train),
            "n_val": len(t.data.val) if t.data.val is not None else 0,
            "n_val_sample": len(t.data.val_sample) if t.data.val_sample is not None else None,
            "processes": plan.processes,
            "seconds": round(state.elapsed_s, 1),  # the steps and evaluations, as the estimate counts them
            "estimated_seconds": None if state.estimated_s is None else round(state.estimated_s, 1),
            "budget_reached": state.budget_reached,
        },
        "label_distribution": label_distribution(t.data.full),
    }
    if description:
        info["dataset_description"] = description
    return info


# --------------------------------------------------------------------------------------------- preparing a run
def _accelerator(device: str | None, model: PromptClassifier | None):
    """Accelerate's handle and the device to train on: the model's, the one asked for, or the best available."""
    from accelerate import Accelerator

    if model is not None:
        if device is not None and torch.device(device) != model.device:
            raise ConfigError(f"the model is on {model.device}; leave device empty or give {model.device}")
        chosen = model.device
    elif device is None:
        chosen = default_device()
    else:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"unknown device {device!r}: use cuda, cuda:N, mps or cpu") from None
    # device_placement=False: the adapter and the batches are already on ``device``; the shared backbone is no
    # submodule of the adapter, so nothing Accelerate does can move or cast it.
    accelerator = Accelerator(cpu=chosen.type == "cpu", device_placement=False)
    return accelerator, (accelerator.device if accelerator.num_processes > 1 else chosen)


def _build_adapter(data, model, config, init_adapter, device, generator, init_from=None):
    """``(the adapter to train, whether its head is new)``: ``model``, or one loaded from ``init_adapter``, or one
    built from ``config`` (labels and task from the data), its prompt started at ``init_from``'s when given."""
    if sum(x is not None for x in (model, init_adapter, config)) > 1:
        raise ConfigError("give at most one of model, init_adapter and config")
    if init_from is not None and (model is not None or init_adapter is not None):
        raise ConfigError("init_from starts a new adapter: give config (or nothing), not model or init_adapter")
    if model is not None:
        return model, False
    if init_adapter is not None:
        return PromptClassifier.from_pretrained(init_adapter, include_resume=True, device=device), False
    if isinstance(config, PromptConfig):
        config = config.to_dict()
    options = dict(config or {})
    source = None
    if init_from is not None:
        source = init_from if isinstance(init_from, PromptClassifier) else PromptClassifier.from_pretrained(
            init_from, include_resume=True, device=device)  # fmt: skip
        # what shapes the prompt is the source's unless given; the base model is the source's unless given
        taken = {k: getattr(source.config, k) for k in (*PROMPT_SHAPE, "base_model")}
        given = {k: v for k, v in options.items() if not (k in AUTOMATIC and v is None)}  # None: automatic
        options = {**{k: getattr(v, "value", v) for k, v in taken.items()}, **given}
    options["labels"] = list(data.label_names or []) if data.task == "classification" else []
    options["task"] = data.task
    config = PromptConfig.from_dict(options)
    if config.lora_rank is None:
        config.lora_rank = auto_lora_rank(config.method, len(data))
    if config.start_layer is None:
        layers = load_backbone(config.base_model or None, device).num_layers
        config.start_layer = auto_start_layer(config.method, layers, len(data), config.lora_rank)
    clf = PromptClassifier(config=config, device=device, generator=generator)
    head_taken = source is not None and start_from(clf, source)
    return clf, not head_taken


def _run_data(data: Dataset, eval_data: Dataset | None, clf: PromptClassifier, args: TrainingArguments) -> RunData:
    """Align the labels to the adapter, hold out the validation set, tokenise both once."""
    warnings = list(data.warnings)
    data = align_labels(data, clf)
    if eval_data is not None:
        train_data, val_data = data, align_labels(eval_data, clf)
        warnings += [w for w in eval_data.warnings if w not in warnings]
    elif args.val_split > 0:
        train_data, val_data = split_dataset(data, args.val_split, args.seed)
        warnings += [w for w in train_data.warnings if w not in warnings]
    else:
        train_data, val_data = data, None
    max_length, examples, truncated = _encode_training(clf, train_data, args.max_length)
    if truncated:
        warnings.append(
            f"{truncated} of {len(train_data)} training examples are longer than {max_length} tokens (prompt "
            f"included) and{_TRUNCATED}; raise max_length to keep more of them"
        )
    val_examples = None
    if val_data is not None:
        val_examples = clf.encode(val_data.texts, val_data.text_pairs, max_length).examples
    dtype = torch.float32 if clf.config.task == "regression" else torch.long
    sample = None
    if val_data is not None and 0 < args.eval_sample < len(val_data):  # fixed by the seed: every evaluation alike
        sample = sorted(np.random.default_rng(args.seed).choice(len(val_data), args.eval_sample, replace=False))
        sample = [int(i) for i in sample]
    return RunData(
        full=data, train=train_data, val=val_data, max_length=max_length, train_examples=examples,
        val_examples=val_examples, targets=torch.tensor(train_data.labels, dtype=dtype, device=clf.device),
        val_targets=None if val_data is None else torch.tensor(val_data.labels, dtype=dtype), warnings=warnings,
        val_sample=sample,
    )  # fmt: skip


def _reencoded(data: RunData, clf: PromptClassifier, max_length: int, why: str) -> RunData:
    """``data`` with its training and validation examples laid out again at ``max_length`` tokens, the note of
    truncated examples replaced by the new count and ``why``."""
    _, examples, truncated = _encode_training(clf, data.train, max_length)
    val = None if data.val is None else clf.encode(data.val.texts, data.val.text_pairs, max_length).examples
    warnings = [w for w in data.warnings if _TRUNCATED not in w]
    warnings.append(f"{truncated} of {len(data.train)} training examples{_TRUNCATED} at {max_length} tokens, {why}")
    return dataclasses.replace(data, max_length=max_length, train_examples=examples, val_examples=val,
                               warnings=warnings)  # fmt: skip


def _encode_training(clf: PromptClassifier, train: Dataset, max_length: int | None) -> tuple[int, list, int]:
    """``(max_length, examples, how many were truncated)``, the automatic max_length chosen from the examples."""
    limit = clf.backbone.max_length
    encoded = clf.encode(train.texts, train.text_pairs, min(max_length or limit, limit))
    if max_length is not None:
        return min(max_length, limit), encoded.examples, encoded.num_truncated
    chosen = auto_max_length(encoded.lengths, limit)
    long = [i for i, n in enumerate(encoded.lengths) if n > chosen]
    if long:  # re-lay out only the examples the automatic length cuts
        pairs = [train.text_pairs[i] for i in long] if train.text_pairs is not None else None
        again = clf.encode([train.texts[i] for i in long], pairs, chosen)
        for i, e in zip(long, again.examples):
            encoded.examples[i] = e
    return chosen, encoded.examples, sum(e.truncated for e in encoded.examples)


def _start_head_at(clf: PromptClassifier, value: float) -> None:
    # Start a regression head at the mean target: the loss then begins at the targets' variance, not at their scale.
    last = [m for m in clf.head.modules() if isinstance(m, nn.Linear)][-1]
    if last.bias is not None:
        with torch.no_grad():
            last.bias.fill_(value)


def _optimizer(clf: PromptClassifier, plan: Plan, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters only: the prompt (and its encoder, deep tables) at ``lr``, the head at
    ``head_lr``, the bias offsets at ``bias_lr``, the low-rank updates at ``lora_lr``. Deep tables with frozen rows (a
    later start layer) take no weight decay: it would move the rows that must stay as they started."""
    prompt = [p for m in (clf.prompt, clf.deep) if m is not None for p in m.parameters() if p.requires_grad]
    head = [p for p in clf.head.parameters() if p.requires_grad]
    decay = 0.0 if clf.config.start_layer else weight_decay
    groups = [{"params": prompt, "lr": plan.lr, "name": "prompt", "weight_decay": decay}]
    if head:
        groups.append({"params": head, "lr": plan.head_lr, "name": "head"})
    if clf.offsets is not None:
        groups.append({"params": list(clf.offsets.parameters()), "lr": plan.bias_lr, "name": "offsets"})
    if clf.low_rank is not None:
        groups.append({"params": list(clf.low_rank.parameters()), "lr": plan.lora_lr, "name": "low_rank"})
    return torch.optim.AdamW(groups, lr=plan.lr, weight_decay=weight_decay)


def _copy_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _selection(patience: int | None, data: RunData) -> tuple[int, bool]:
    """``(patience, keep_last)``: a given patience keeps the best evaluation. Empty: PATIENCE, and when an evaluation
    reads fewer than MIN_SELECTION_EXAMPLES validation texts the adapter at the stop is kept rather than the best
    evaluation's (one evaluation's accuracy is then too noisy to choose by: training_args.py)."""
    if patience is not None or data.val_examples is None:
        return patience or 0, False
    return PATIENCE, len(data.validation(full=False)[0]) < MIN_SELECTION_EXAMPLES


def _evaluations_since_best(history: list[dict]) -> int:
    """Evaluations after the best one of ``history`` (by the primary metric, ties to the lower validation loss)."""
    best, best_loss, at = None, math.inf, 0
    for i, h in enumerate(history):
        _, value, higher = primary_metric(h)
        if _is_better(value, h["val_loss"], best, best_loss, higher):
            best, best_loss, at = value, h["val_loss"], i
    return len(history) - 1 - at


def _is_better(value: float, loss: float, best: float | None, best_loss: float, higher: bool) -> bool:
    # Ties on the metric (frequent with accuracy on small validation sets) go to the lower validation loss.
    if best is None:
        return True
    if value != best:
        return value > best if higher else value < best
    return loss < best_loss
