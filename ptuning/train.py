"""Training: the prompt and head of a PromptClassifier on a frozen backbone, with Accelerate for devices.

    Dataset -> train() -> TrainResult(model, metrics, state)

One run: build (or load) the adapter, hold out a validation split, tokenise both sets once, then AdamW over the
trainable parameters only (prompt/encoder/deep tables at ``lr``, the head at ``head_lr``), linear warm-up and
decay, gradient clipping, an evaluation every epoch (or ``eval_steps``), early stopping on the primary metric,
and the best weights restored at the end. Progress goes to callbacks; a cancel event stops the run between two
steps and still returns the best adapter so far.

With ``checkpoint_dir`` every evaluation also writes a checkpoint (the adapter, the optimizer and scheduler, the
RNG state and the trainer's own state: safetensors and JSON, never pickles), and ``resume=True`` continues from
it: a run cancelled and resumed ends with the same adapter as one that was never interrupted.

Multi-GPU: ``accelerate launch -m ptuning train ...`` runs one process per GPU; each takes every n-th batch and
the gradients are averaged (``batch_size`` is per process).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .backbones import default_device
from .batching import length_grouped_batches
from .config import Method, PromptConfig
from .errors import ConfigError, DataError
from .model import PromptClassifier

if TYPE_CHECKING:
    from .data import Dataset
# .data and .metrics (pandas, scikit-learn, scipy: seconds to import) are imported where used, so that the CLI,
# which reads this module's help texts on every start, answers --help quickly.

# Learning rates when none is given. Prompt vectors live in the embedding space and move far from their init only
# with steps much larger than a head needs; p-tuning's encoder and deep tables amplify each step, so they take less.
PROMPT_LR = {Method.PROMPT: 3e-2, Method.P_TUNING: 1e-2, Method.DEEP: 1e-2}
HEAD_LR = 1e-2

# Automatic epochs: about STEP_BUDGET optimizer steps in all, at least MIN_AUTO_EPOCHS and at most MAX_AUTO_EPOCHS
# passes. Batches of 32 from 200 examples get 20 epochs (the prompt needs many passes), 5,000 get 7, 50,000 get 1:
# a few minutes for a few hundred examples on a laptop CPU; early stopping ends a run that stops improving.
STEP_BUDGET = 1000
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 1, 20
# Automatic max_length: this percentile of the training examples' lengths (prompt and special tokens included),
# rounded up to a multiple of 8: a few outliers are truncated instead of setting the cost of every long batch.
LENGTH_PERCENTILE = 99
# With eval_steps unset, runs of fewer than this many epochs evaluate (and checkpoint) every 1/SHORT_RUN_EVALUATIONS
# of their steps, rounded up, and after the last step: at most this many times (a 6-step run: at steps 2, 4 and 6).
SHORT_RUN_EVALUATIONS = 4

CHECKPOINT_FORMAT = 1
_HISTORY_KEYS = ("step", "epoch", "train_loss", "val_loss")


@dataclass
class TrainingArguments:
    """How to train; every field has a default that works, the automatic ones (None) adapt to the data."""

    epochs: int | None = field(
        default=None,
        metadata={
            "help": f"Passes over the training data; empty: chosen from its size (about {STEP_BUDGET} steps, "
            f"{MIN_AUTO_EPOCHS} to {MAX_AUTO_EPOCHS} epochs)."
        },
    )
    lr: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the prompt (and its encoder or deep tables); empty: by method ("
            + ", ".join(f"{m.value} {lr:g}" for m, lr in PROMPT_LR.items())
            + ")."
        },
    )
    head_lr: float | None = field(
        default=None, metadata={"help": f"Learning rate of the classification head; empty: {HEAD_LR:g}."}
    )
    batch_size: int = field(default=32, metadata={"help": "Examples per training step (per process)."})
    warmup_ratio: float = field(
        default=0.1,
        metadata={"help": "Share of the steps in which the learning rate rises from 0; then it falls linearly to 0."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip gradients to this norm; 0 turns clipping off."})
    eval_steps: int | None = field(
        default=None,
        metadata={
            "help": f"Evaluate (and checkpoint) every N steps; empty: after every epoch, or, with fewer than "
            f"{SHORT_RUN_EVALUATIONS} epochs, every 1/{SHORT_RUN_EVALUATIONS} of the steps (rounded up): at most "
            f"{SHORT_RUN_EVALUATIONS} times."
        },
    )
    patience: int | None = field(
        default=5,
        metadata={"help": "Stop after this many evaluations without a better validation score; 0: never stop early."},
    )
    seed: int = field(default=42, metadata={"help": "Random seed: the same seed and data give the same adapter."})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": f"Longest input in tokens, prompt included; longer texts are truncated. Empty: the "
            f"{LENGTH_PERCENTILE}th percentile of the training texts, capped by the base model's limit."
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "cuda, cuda:1, mps or cpu; empty: the best available (cuda, mps, then cpu)."}
    )
    val_split: float = field(
        default=0.1,
        metadata={"help": "Fraction of the data held out for validation when no evaluation file is given; 0: none."},
    )
    checkpoint_dir: str | None = field(
        default=None, metadata={"help": "Save a checkpoint here at every evaluation, to resume from."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue the run saved in checkpoint_dir."})

    def __post_init__(self) -> None:
        checks = [
            (self.epochs is None or self.epochs >= 1, "epochs must be at least 1"),
            (self.lr is None or self.lr > 0, "lr must be positive"),
            (self.head_lr is None or self.head_lr >= 0, "head_lr must not be negative"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must not be negative"),
            (self.max_grad_norm >= 0, "max_grad_norm must not be negative"),
            (self.eval_steps is None or self.eval_steps >= 1, "eval_steps must be at least 1"),
            (self.patience is None or self.patience >= 0, "patience must not be negative"),
            (self.max_length is None or self.max_length >= 2, "max_length must be at least 2"),
            (0 <= self.val_split < 1, "val_split must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def training_help(name: str) -> str:
    """The help text of a ``TrainingArguments`` field (for the CLI and the app)."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(TrainingArguments) if f.name == name)


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
    best_metric: float | None = None
    best_step: int | None = None
    examples_per_s: float = 0.0
    cancelled: bool = False
    stopped_early: bool = False
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
        from .metrics import primary_metric

        entry = state.history[-1]
        line = f"step {entry['step']} (epoch {entry['epoch']:.1f}):"
        if entry["train_loss"] is not None:
            line += f" train loss {entry['train_loss']:.4f},"
        line += f" val loss {entry['val_loss']:.4f}, {state.metric_name} {primary_metric(metrics)[1]:.4f}"
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


# --------------------------------------------------------------------------------------------- resolving
def auto_epochs(n_train: int, batch_size: int, processes: int = 1) -> int:
    """Epochs for about ``STEP_BUDGET`` steps: many passes over small data, one or two over large data.

    >>> auto_epochs(180, 32), auto_epochs(4500, 32), auto_epochs(45000, 32)
    (20, 8, 1)
    """
    steps_per_epoch = math.ceil(n_train / (batch_size * processes))
    return max(MIN_AUTO_EPOCHS, min(MAX_AUTO_EPOCHS, math.ceil(STEP_BUDGET / steps_per_epoch)))


def auto_max_length(lengths: Sequence[int], limit: int) -> int:
    """The ``LENGTH_PERCENTILE``th percentile of ``lengths``, rounded up to a multiple of 8, capped by ``limit``.

    >>> auto_max_length([10] * 99 + [500], 512)
    16
    """
    q = math.ceil(float(np.percentile(lengths, LENGTH_PERCENTILE)))
    return min(max(lengths), 8 * math.ceil(q / 8), limit)


def _schedule(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


# --------------------------------------------------------------------------------------------- evaluation
def evaluate(
    model: PromptClassifier, data: Dataset, batch_size: int = 64, max_length: int | None = None
) -> dict:
    """Metrics of ``model`` on labelled ``data`` (``metrics.classification_metrics`` / ``regression_metrics``).

    Class labels are matched by name, so the data may hold a subset of the adapter's classes, in any order.

    >>> evaluate(clf, load_dataset("test.csv", label_names=clf.config.labels))["accuracy"]
    0.87
    """
    data = align_labels(data, model)
    encoded = model.encode(data.texts, data.text_pairs, max_length)
    logits = _predict_logits(model, encoded.examples, batch_size)
    return _metrics(model, data.labels, logits)


def align_labels(data: Dataset, model: PromptClassifier) -> Dataset:
    """``data`` with its class indices renumbered to the adapter's label order; an unknown label is a DataError."""
    cfg = model.config
    if not data.labels:
        raise DataError("the data has no labels; evaluation and training need a label column")
    if data.task != cfg.task:
        raise DataError(
            f"the adapter does {cfg.task} but the data was read for {data.task}: read it with task={cfg.task!r}"
        )
    if cfg.task == "regression" or list(data.label_names) == cfg.labels:
        return data
    index = {name: i for i, name in enumerate(cfg.labels)}
    used = sorted(set(data.labels))
    unknown = [data.label_names[i] for i in used if data.label_names[i] not in index]
    if unknown:
        raise DataError(
            f"labels {', '.join(map(repr, unknown))} are not among the adapter's labels "
            f"({', '.join(map(repr, cfg.labels))})"
        )
    return dataclasses.replace(
        data, labels=[index[data.label_names[y]] for y in data.labels], label_names=list(cfg.labels)
    )


def _metrics(model: PromptClassifier, labels: list, logits: torch.Tensor) -> dict:
    from .metrics import classification_metrics, regression_metrics

    if model.config.task == "regression":
        return regression_metrics(labels, logits[:, 0].tolist())
    return classification_metrics(labels, logits.argmax(-1).tolist(), model.config.labels)


def _loss(logits: torch.Tensor, targets: torch.Tensor, task: str) -> torch.Tensor:
    if task == "regression":
        return F.mse_loss(logits[:, 0], targets)
    return F.cross_entropy(logits, targets)


@torch.inference_mode()
def _predict_logits(clf: PromptClassifier, examples: list, batch_size: int, accelerator=None) -> torch.Tensor:
    """Logits ``[N, num_labels]`` on the CPU, in input order; with several processes each scores every n-th batch."""
    clf.eval()
    batches = length_grouped_batches([len(e.input_ids) for e in examples], batch_size)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    share = max(sum(len(b) for b in batches[r::world]) for r in range(world))
    index = torch.full((share,), -1, dtype=torch.long, device=clf.device)
    out = torch.zeros(share, clf.config.num_labels, device=clf.device)
    filled = 0
    for b in batches[rank::world]:
        index[filled : filled + len(b)] = torch.tensor(b, device=clf.device)
        out[filled : filled + len(b)] = clf(**clf.collate([examples[i] for i in b]))
        filled += len(b)
    if world > 1:
        index, out = accelerator.gather_for_metrics((index, out))
    keep = index >= 0
    logits = torch.zeros(len(examples), clf.config.num_labels)
    logits[index[keep].cpu()] = out[keep].float().cpu()
    return logits


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
) -> TrainResult:
    """Train a prompt adapter on ``data``; returns the adapter with its best validation weights.

    The adapter is ``model`` (trained in place), or loaded from ``init_adapter`` (a saved adapter, to train
    further), or built from ``config`` (labels and task come from the data). Without ``eval_data``,
    ``args.val_split`` of the data is held out. ``cancel`` (an Event or a function) stops the run between two steps.
    ``out_dir`` receives the adapter files; ``description`` (of the data) goes into the model card.

    >>> result = train(load_dataset("reviews.csv"), config={"method": "p-tuning"}, out_dir="runs/reviews")
    >>> result.metrics["accuracy"], result.state.best_step
    (0.86, 240)
    """
    return _Run(data, eval_data, model, config, args or TrainingArguments(), callbacks, cancel, init_adapter).run(
        out_dir, description
    )


class _Run:
    """The state of one training run; ``run()`` drives it from setup to saved adapter."""

    def __init__(self, data, eval_data, model, config, args, callbacks, cancel, init_adapter):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from .data import check_trainable, split_dataset

        check_trainable(data)
        self.args, self.callbacks, self.cancel = args, list(callbacks), cancel
        device = _resolve_device(args.device, model)
        # device_placement=False: the adapter and the batches are already on ``device``; the shared backbone is no
        # submodule of the adapter, so nothing Accelerate does can move or cast it.
        self.accelerator = Accelerator(cpu=device.type == "cpu", device_placement=False)
        if self.accelerator.num_processes > 1:
            device = self.accelerator.device
        set_seed(args.seed)
        self.warnings = list(data.warnings)
        self.clf, fresh = _build_model(data, model, config, init_adapter, device)
        data = align_labels(data, self.clf)
        if eval_data is not None:
            self.train_data, self.val_data = data, align_labels(eval_data, self.clf)
            self.warnings += [w for w in eval_data.warnings if w not in self.warnings]
        elif args.val_split > 0:
            self.train_data, self.val_data = split_dataset(data, args.val_split, args.seed)
            self.warnings += [w for w in self.train_data.warnings if w not in self.warnings]
        else:
            self.train_data, self.val_data = data, None
        self.full_data = data
        if fresh and self.clf.config.task == "regression":
            _init_head_bias(self.clf, float(np.mean(self.train_data.labels)))
        self._encode()
        self._plan()

    # ------------------------------------------------------------------------------------------ setup
    def _encode(self) -> None:
        clf, args, train = self.clf, self.args, self.train_data
        limit = clf.backbone.max_length
        encoded = clf.encode(train.texts, train.text_pairs, min(args.max_length or limit, limit))
        if args.max_length is None:
            self.max_length = auto_max_length(encoded.lengths, limit)
            long = [i for i, n in enumerate(encoded.lengths) if n > self.max_length]
            if long:  # re-lay out only the examples the automatic length cuts
                pairs = [train.text_pairs[i] for i in long] if train.text_pairs is not None else None
                again = clf.encode([train.texts[i] for i in long], pairs, self.max_length)
                for i, e in zip(long, again.examples):
                    encoded.examples[i] = e
            truncated = sum(e.truncated for e in encoded.examples)
        else:
            self.max_length, truncated = min(args.max_length, limit), encoded.num_truncated
        if truncated:
            self.warnings.append(
                f"{truncated} of {len(train)} training examples are longer than {self.max_length} tokens (prompt "
                "included) and were truncated; raise max_length to keep more of them"
            )
        self.train_examples = encoded.examples
        self.val_examples = None
        if self.val_data is not None:
            self.val_examples = clf.encode(self.val_data.texts, self.val_data.text_pairs, self.max_length).examples
        dtype = torch.float32 if clf.config.task == "regression" else torch.long
        self.targets = torch.tensor(train.labels, dtype=dtype, device=clf.device)
        self.val_targets = None if self.val_data is None else torch.tensor(self.val_data.labels, dtype=dtype)

    def _plan(self) -> None:
        args, world = self.args, self.accelerator.num_processes
        method = self.clf.config.method
        self.lr = args.lr if args.lr is not None else PROMPT_LR[method]
        self.head_lr = args.head_lr if args.head_lr is not None else HEAD_LR
        self.epochs = args.epochs or auto_epochs(len(self.train_data), args.batch_size, world)
        n_batches = math.ceil(len(self.train_data) / args.batch_size)
        self.steps_per_epoch = math.ceil(n_batches / world)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.warmup_steps = int(args.warmup_ratio * self.total_steps)
        if args.eval_steps:
            self.eval_every = args.eval_steps
        elif self.epochs >= SHORT_RUN_EVALUATIONS:
            self.eval_every = self.steps_per_epoch
        else:
            self.eval_every = math.ceil(self.total_steps / SHORT_RUN_EVALUATIONS)
        self.eval_batch_size = max(64, 2 * args.batch_size)

    def _optimizer(self) -> torch.optim.Optimizer:
        clf = self.clf
        prompt = [p for m in (clf.prompt, clf.deep) if m is not None for p in m.parameters() if p.requires_grad]
        head = [p for p in clf.head.parameters() if p.requires_grad]
        groups = [{"params": prompt, "lr": self.lr, "name": "prompt"}]
        if head:
            groups.append({"params": head, "lr": self.head_lr, "name": "head"})
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.args.weight_decay)

    # ------------------------------------------------------------------------------------------ the loop
    def run(self, out_dir, description) -> TrainResult:
        acc, clf, args = self.accelerator, self.clf, self.args
        self.optimizer = self._optimizer()
        schedule = _schedule(self.total_steps, self.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.state = TrainState(total_steps=self.total_steps, epochs=self.epochs, warnings=self.warnings)
        self.best_weights: dict | None = None
        self.best_loss = math.inf
        self.since_best = 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.elapsed_before = 0.0
        finished = False
        if args.resume:
            finished = self._load_checkpoint()
        # The adapter is prepared, not the backbone: under DDP only the adapter's parameters are synchronised.
        model, optimizer = acc.prepare(clf, self.optimizer)
        self.state.learning_rate = self.scheduler.get_last_lr()[0]
        self._trigger("on_train_begin", self.state)

        state, start, start_step, seen = self.state, time.perf_counter(), self.state.step, 0
        rank, world = acc.process_index, acc.num_processes
        saved_step = state.step if args.resume else None
        while not finished and state.step < self.total_steps:
            epoch = state.step // self.steps_per_epoch
            order = _epoch_batches(
                [len(e.input_ids) for e in self.train_examples], args.batch_size, args.seed + epoch, rank, world,
                self.steps_per_epoch,
            )  # fmt: skip
            for batch_idx in order[state.step % self.steps_per_epoch :]:
                if self._cancelled():
                    state.cancelled = True
                    break
                clf.train()
                batch = clf.collate([self.train_examples[i] for i in batch_idx])
                loss = _loss(model(**batch), self.targets[batch_idx], clf.config.task)
                acc.backward(loss)
                if args.max_grad_norm:
                    acc.clip_grad_norm_(clf.parameters(), args.max_grad_norm)
                optimizer.step()
                self.scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                self.loss_sum += loss.item()
                self.loss_count += 1
                state.step += 1
                seen += len(batch_idx) * world
                state.epoch = state.step / self.steps_per_epoch
                state.loss = self.loss_sum / self.loss_count
                state.learning_rate = self.scheduler.get_last_lr()[0]
                self._update_timing(start, state.step - start_step, seen)
                self._trigger("on_step_end", state)
                if state.step % self.eval_every == 0 or state.step == self.total_steps:
                    self._evaluate()
                    state.stopped_early = bool(args.patience) and self.since_best >= args.patience
                    self._save_checkpoint()
                    saved_step = state.step
                    if state.stopped_early:
                        break
            if state.cancelled or state.stopped_early:
                break
        if state.cancelled and saved_step != state.step:
            self._save_checkpoint()  # resuming continues from this very step
        if self.val_examples is not None and not state.history:
            self._evaluate()  # cancelled before the first evaluation: measure what there is
        if self.best_weights is not None:
            clf.load_state_dict(self.best_weights)
        clf.eval()
        self._update_timing(start, state.step - start_step, seen)
        self._trigger("on_train_end", state)
        return self._finish(out_dir, description)

    def _cancelled(self) -> bool:
        c = self.cancel
        flag = bool(c is not None and (c.is_set() if hasattr(c, "is_set") else c()))
        if self.accelerator.num_processes > 1:  # every process stops at the same step, or DDP would hang
            t = torch.tensor([float(flag)], device=self.clf.device)
            flag = bool(self.accelerator.reduce(t, reduction="sum").item() > 0)
        return flag

    def _update_timing(self, start: float, steps: int, seen: int) -> None:
        state = self.state
        session = time.perf_counter() - start
        state.elapsed_s = self.elapsed_before + session
        state.examples_per_s = seen / session if session > 0 else 0.0
        remaining = self.total_steps - state.step
        state.eta_s = session / steps * remaining if steps else None

    def _evaluate(self) -> None:
        from .metrics import primary_metric

        state, clf = self.state, self.clf
        train_loss = self.loss_sum / self.loss_count if self.loss_count else None
        self.loss_sum, self.loss_count = 0.0, 0
        if self.val_examples is None:
            return
        logits = _predict_logits(clf, self.val_examples, self.eval_batch_size, self.accelerator)
        val_loss = float(_loss(logits, self.val_targets, clf.config.task))
        metrics = _metrics(clf, self.val_data.labels, logits)
        name, value, higher = primary_metric(metrics)
        entry = {"step": state.step, "epoch": round(state.epoch, 4), "train_loss": train_loss, "val_loss": val_loss}
        state.history.append({**entry, **metrics})
        state.metric_name = name
        if _is_better(value, val_loss, state.best_metric, self.best_loss, higher):
            state.best_metric, state.best_step, self.best_loss = value, state.step, val_loss
            self.best_weights = {k: v.detach().clone() for k, v in clf.state_dict().items()}
            self.since_best = 0
        else:
            self.since_best += 1
        self._trigger("on_evaluate", state, metrics)

    def _trigger(self, hook: str, *a) -> None:
        if self.accelerator.is_main_process:
            for cb in self.callbacks:
                fn = getattr(cb, hook, None)
                if fn is not None:
                    fn(*a)

    # ------------------------------------------------------------------------------------------ the result
    def _finish(self, out_dir, description) -> TrainResult:
        from .data import label_distribution

        clf, state, args = self.clf, self.state, self.args
        best = next((h for h in state.history if h["step"] == state.best_step), None)
        metrics = {k: v for k, v in best.items() if k not in _HISTORY_KEYS} if best else {}
        clf.info = {
            "metrics": metrics,
            "training": {
                "epochs": self.epochs,
                "steps": state.step,
                "total_steps": self.total_steps,
                "learning_rate": self.lr,
                "head_learning_rate": self.head_lr,
                "batch_size": args.batch_size,
                "warmup_ratio": args.warmup_ratio,
                "weight_decay": args.weight_decay,
                "max_grad_norm": args.max_grad_norm,
                "max_length": self.max_length,
                "seed": args.seed,
                "patience": args.patience,
                "best_step": state.best_step,
                "stopped_early": state.stopped_early,
                "cancelled": state.cancelled,
                "n_train": len(self.train_data),
                "n_val": len(self.val_data) if self.val_data is not None else 0,
                "processes": self.accelerator.num_processes,
            },
            "label_distribution": label_distribution(self.full_data),
        }
        if description:
            clf.info["dataset_description"] = description
        saved = None
        if out_dir is not None:
            if self.accelerator.is_main_process:
                clf.save_pretrained(out_dir)
            self.accelerator.wait_for_everyone()
            saved = Path(out_dir)
        return TrainResult(clf, metrics, state, saved, self.warnings)

    # ------------------------------------------------------------------------------------------ checkpoints
    def _fingerprint(self) -> str:
        parts = []
        for ds in (self.train_data, self.val_data):
            parts.append(None if ds is None else [ds.texts, ds.text_pairs, ds.labels])
        return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()

    def _trainer_state(self) -> dict:
        s = self.state
        return {
            "format_version": CHECKPOINT_FORMAT,
            "args": _comparable_args(self.args),
            "config": self.clf.config.to_dict(),
            "data_fingerprint": self._fingerprint(),
            "resolved": self._resolved(),
            "step": s.step,
            "epoch": s.epoch,
            "seed": self.args.seed,
            "history": s.history,
            "metric_name": s.metric_name,
            "best_metric": s.best_metric,
            "best_step": s.best_step,
            "best_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "since_best": self.since_best,
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "elapsed_s": s.elapsed_s,
            "finished": s.step >= self.total_steps or s.stopped_early,
            "stopped_early": s.stopped_early,
        }

    def _resolved(self) -> dict:
        return {
            "epochs": self.epochs, "lr": self.lr, "head_lr": self.head_lr, "max_length": self.max_length,
            "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "processes": self.accelerator.num_processes,
        }  # fmt: skip

    def _save_checkpoint(self) -> None:
        if self.args.checkpoint_dir is None:
            return
        if self.accelerator.is_main_process:
            save_checkpoint(Path(self.args.checkpoint_dir), self)
        self.accelerator.wait_for_everyone()

    def _load_checkpoint(self) -> bool:
        """Restore the run from ``checkpoint_dir``; True when that run had already finished."""
        if self.args.checkpoint_dir is None:
            raise ConfigError("resume needs checkpoint_dir: the folder the run saved its checkpoints in")
        directory = Path(self.args.checkpoint_dir)
        if not (directory / "trainer_state.json").is_file() and (directory.with_name(directory.name + ".old")).is_dir():
            directory = directory.with_name(directory.name + ".old")  # a save was interrupted between two renames
        path = directory / "trainer_state.json"
        if not path.is_file():
            raise ConfigError(f"no checkpoint to resume in {directory}; train without resume to start anew")
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format_version", 0) > CHECKPOINT_FORMAT:
            raise ConfigError(f"the checkpoint in {directory} was written by a newer ptuning")
        mine = _comparable_args(self.args)
        changed = [f"{k}={saved['args'].get(k)!r}" for k in mine if saved["args"].get(k) != mine[k]]
        if changed:
            raise ConfigError(
                f"the checkpoint in {directory} was made with {', '.join(changed)}: resume with the same settings, "
                "or train anew without resume"
            )
        if saved["config"] != self.clf.config.to_dict():
            diff = [k for k, v in saved["config"].items() if self.clf.config.to_dict().get(k) != v]
            raise ConfigError(
                f"the checkpoint in {directory} is of an adapter with other settings ({', '.join(diff)}): resume "
                "with the same settings, or train anew without resume"
            )
        if saved["data_fingerprint"] != self._fingerprint():
            raise ConfigError(
                f"the data differs from the data of the checkpoint in {directory}: resume with the same files, "
                "or train anew without resume"
            )
        if saved["resolved"]["processes"] != self.accelerator.num_processes:
            raise ConfigError(
                f"the checkpoint was made with {saved['resolved']['processes']} processes: resume with as many"
            )
        if saved["resolved"] != self._resolved():  # the same settings and data, so only a changed base model
            raise ConfigError(
                f"the checkpoint in {directory} planned {saved['resolved']}, this run plans {self._resolved()}: "
                "has the base model changed? Train anew without resume"
            )

        loaded = PromptClassifier.from_pretrained(directory / "last", include_resume=True, device=self.clf.device)
        self.clf.load_state_dict(loaded.state_dict())
        if (directory / "best").is_dir():
            best = PromptClassifier.from_pretrained(directory / "best", include_resume=True, device=self.clf.device)
            self.best_weights = {k: v.detach().clone() for k, v in best.state_dict().items()}
        tensors = load_file(directory / "optimizer.safetensors")
        self.optimizer.load_state_dict(_optimizer_state(tensors, saved["optimizer"]))
        self.scheduler.load_state_dict(saved["scheduler"])

        s = self.state
        s.step, s.epoch, s.history = saved["step"], saved["epoch"], saved["history"]
        s.metric_name, s.best_metric, s.best_step = saved["metric_name"], saved["best_metric"], saved["best_step"]
        s.stopped_early = saved["stopped_early"]
        s.elapsed_s = self.elapsed_before = saved["elapsed_s"]
        self.best_loss = saved["best_loss"] if saved["best_loss"] is not None else math.inf
        self.since_best, self.loss_sum, self.loss_count = saved["since_best"], saved["loss_sum"], saved["loss_count"]
        # Last: building the adapters above drew random numbers
        rng = load_file(directory / "rng_state.safetensors")
        torch.set_rng_state(rng["torch"])
        cuda = sorted(k for k in rng if k.startswith("cuda."))
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([rng[k] for k in cuda])
        return bool(saved["finished"])


def save_checkpoint(directory: Path, run: _Run) -> None:
    """Write a checkpoint of ``run`` to ``directory``, replacing the previous one only once it is complete.

    ``last/`` and ``best/`` are adapters (loadable as they are); ``optimizer.safetensors`` holds the optimizer's
    tensors and ``trainer_state.json`` everything else (optimizer hyperparameters, scheduler, progress, history);
    ``rng_state.safetensors`` the random generators, so a resumed run draws the same dropout masks.
    """
    staging = directory.with_name(directory.name + ".saving")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    clf, state = run.clf, run.state
    clf.save_pretrained(staging / "last")
    if state.best_step is not None and state.best_step == state.step and run.best_weights is not None:
        clf.save_pretrained(staging / "best")
    elif state.best_step is not None and (directory / "best").is_dir():  # this run's best, from an earlier save
        shutil.copytree(directory / "best", staging / "best")
    tensors, meta = _optimizer_tensors(run.optimizer.state_dict())
    save_file(tensors, staging / "optimizer.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda.{i}": t for i, t in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, staging / "rng_state.safetensors")
    trainer_state = {**run._trainer_state(), "optimizer": meta, "scheduler": run.scheduler.state_dict()}
    text = json.dumps(trainer_state, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (staging / "trainer_state.json").write_text(text, encoding="utf-8")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


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


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _comparable_args(args: TrainingArguments) -> dict:
    """The arguments a resumed run must share with the run it continues."""
    skip = ("device", "checkpoint_dir", "resume", "patience")
    return {k: v for k, v in dataclasses.asdict(args).items() if k not in skip}


# --------------------------------------------------------------------------------------------- helpers
def _resolve_device(device: str | None, model: PromptClassifier | None) -> torch.device:
    if model is not None:
        if device is not None and torch.device(device) != model.device:
            raise ConfigError(f"the model is on {model.device}; leave device empty or give {model.device}")
        return model.device
    if device is None:
        return default_device()
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}: use cuda, cuda:N, mps or cpu") from None


def _build_model(data, model, config, init_adapter, device) -> tuple[PromptClassifier, bool]:
    """The adapter to train and whether it is new (not already trained)."""
    if sum(x is not None for x in (model, init_adapter, config)) > 1:
        raise ConfigError("give at most one of model, init_adapter and config")
    if model is not None:
        return model, False
    if init_adapter is not None:
        return PromptClassifier.from_pretrained(init_adapter, include_resume=True, device=device), False
    if isinstance(config, PromptConfig):
        config = config.to_dict()
    options = dict(config or {})
    options["labels"] = list(data.label_names or []) if data.task == "classification" else []
    options["task"] = data.task
    return PromptClassifier(config=PromptConfig.from_dict(options), device=device), True


def _init_head_bias(clf: PromptClassifier, value: float) -> None:
    # Start a regression head at the mean target: the loss then begins at the targets' variance, not at their scale.
    last = [m for m in clf.head.modules() if isinstance(m, nn.Linear)][-1]
    if last.bias is not None:
        with torch.no_grad():
            last.bias.fill_(value)


def _epoch_batches(lengths, batch_size, seed, rank, world, steps) -> list[list[int]]:
    """This process's batches of one epoch: every ``world``-th batch, wrapping so each process takes ``steps``."""
    batches = length_grouped_batches(lengths, batch_size, shuffle=True, seed=seed)
    return [batches[(i * world + rank) % len(batches)] for i in range(steps)]


def _is_better(value: float, loss: float, best: float | None, best_loss: float, higher: bool) -> bool:
    # Ties on the metric (frequent with accuracy on small validation sets) go to the lower validation loss.
    if best is None:
        return True
    if value != best:
        return value > best if higher else value < best
    return loss < best_loss
