"""What a training run will do, decided before its first step: one pure function of the data, the arguments and
the device's measured costs.

    plan = make_plan(args, Workload(train_lengths, val_lengths, max_length, method), costs=calibration, seconds_left=300)

The plan says the length texts are cut at, the epochs and steps, the learning rates and their schedule, when to
evaluate, and (when the device's costs are given) the priced time of it all. A time budget with the automatic length
and epochs first cuts the texts shorter until ``BUDGET_EPOCHS`` epochs fit, then takes as many automatic epochs as fit,
or part of one. A resumed run takes the plan its checkpoint recorded (the length, epochs and steps its budget chose),
budget or not. The trainer runs a plan and never changes it; ``train()`` lays the texts out again when the plan cuts
them shorter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import Method
from .estimate import Calibration, Estimate, estimate_run
from .training_args import BIAS_LR, EMA_DECAY, HEAD_LR, LORA_LR, SHORT_RUN_EVALUATIONS, TrainingArguments, auto_epochs, auto_lr

__all__ = ["BUDGET_EPOCHS", "BUDGET_SHARE", "MIN_BUDGET_LENGTH", "Plan", "Workload", "freeze_layer", "lr_schedule",
           "make_plan", "shorter_lengths"]

# The share of a time budget left after setup that the plan may fill: estimates are within about 10-20 %, and the
# loop's own stop (before a step that would end past the budget) catches the rest.
BUDGET_SHARE = 0.9
# A time budget with the automatic length and epochs cuts the texts shorter (halving the length, not below
# MIN_BUDGET_LENGTH tokens) until at least BUDGET_EPOCHS epochs fit. On 410 man pages (BENCHMARKS.md) the runs without
# a budget found their best adapter after 6 to 10 epochs at every length (128, 256, 512 tokens), and budget runs cut
# to leave 5 or 8 epochs fell 4-7 points short of that; one epoch at 512 tokens left a coin toss (0.51).
BUDGET_EPOCHS = 10
MIN_BUDGET_LENGTH = 64


# The deep default trains from a third of the way up (layer 2 of MiniLM's 6) when it has LATE_START_TEXTS training
# texts or more, and from the input (0) below that. Measured on MiniLM (BENCHMARKS.md, issue 22; 3 seeds each): from
# layer 2, movie 2,000 read 0.817-0.822 against 0.811 and the full split 0.829 against 0.822, each in a fraction of
# the time; 600 question types read 0.840 against 0.860 (0.849 from layer 1), where the whole pass is cheap anyway.
LATE_START_TEXTS = 1000
# With low-rank updates, a deep adapter trained on LORA_EARLY_TEXTS or more starts at layer 0 all the same: on the
# full movie split (8,454 texts) rank-4 updates read 0.846-0.850 from layer 0 against 0.839 from layer 2, in 274-350 s
# against 254 s; on movie 2,000 the later start read as well (0.824 against 0.822) in less time (83 s against 88-93 s).
LORA_EARLY_TEXTS = 5000
# Deep adapters train rank-4 low-rank updates of every linear layer by default (issue 22; BENCHMARKS.md): on MiniLM
# they read 0.892 on 600 question types (3 seeds) against 0.858 without and full fine-tuning's 0.889, and 0.850 on
# the full movie split (one seed) against 0.830; rank 8 read the same (0.906 and 0.838 from layer 2, one seed each)
# at twice the size. A rank-4 adapter of MiniLM's six layers is about 0.7 MB.
AUTO_LORA_RANK = 4


def late_start_layer(num_layers: int) -> int:
    """A later start on a backbone of ``num_layers``: a third of the way up, at least 1 (0 with fewer than 2 layers).

    >>> late_start_layer(6), late_start_layer(12), late_start_layer(2), late_start_layer(1)
    (2, 4, 1, 0)
    """
    return max(1, num_layers // 3) if num_layers >= 2 else 0


def auto_start_layer(method: Method, num_layers: int, n_train: int, lora_rank: int = 0) -> int:
    """The layer a deep adapter trains from when none is given: ``late_start_layer`` with ``n_train`` of
    LATE_START_TEXTS or more, else 0; 0 for every other method. With low-rank updates, 0 again from LORA_EARLY_TEXTS
    texts on, where the updates of the lower layers are worth their time.

    >>> auto_start_layer(Method.DEEP, 6, 2000), auto_start_layer(Method.DEEP, 6, 600)
    (2, 0)
    >>> auto_start_layer(Method.DEEP, 12, 5000), auto_start_layer(Method.PROMPT, 6, 5000)
    (4, 0)
    >>> auto_start_layer(Method.DEEP, 6, 2000, lora_rank=4), auto_start_layer(Method.DEEP, 6, 8454, lora_rank=4)
    (2, 0)
    """
    if Method(method) != Method.DEEP or n_train < LATE_START_TEXTS or (lora_rank and n_train >= LORA_EARLY_TEXTS):
        return 0
    return late_start_layer(num_layers)


def auto_lora_rank(method: Method, n_train: int) -> int:
    """The rank of the low-rank updates an adapter trains with when none is given: AUTO_LORA_RANK for the deep method
    (the default), 0 for the others (a user who picks them keeps what PEFT can load and what they are).

    >>> auto_lora_rank(Method.DEEP, 600), auto_lora_rank(Method.PROMPT, 600)
    (4, 0)
    """
    return AUTO_LORA_RANK if Method(method) == Method.DEEP else 0


# The adapter settings whose empty value (None) train() fills in from the data: a source adapter's value is taken
# over them (``init_from``), never over a value given.
AUTOMATIC = ("start_layer", "lora_rank")


@dataclass(frozen=True)
class Workload:
    """What a plan needs to know of a run's data: the token lengths of its examples as laid out (at ``max_length``),
    of the training examples and of those one evaluation reads (None: no validation)."""

    train_lengths: tuple[int, ...]
    val_lengths: tuple[int, ...] | None
    max_length: int  # the length the examples are laid out at: given, or chosen from the data
    method: Method
    processes: int = 1
    start_layer: int = 0  # the adapter's: a later start takes the late start's learning rate and epochs
    lora_rank: int = 0  # the adapter's: low-rank updates take the late start's epochs too (they converge as fast)
    num_layers: int = 0  # the backbone's (a run that freezes its lower layers freezes the lower half of those it trains)

    @property
    def n_train(self) -> int:
        return len(self.train_lengths)


@dataclass(frozen=True)
class Plan:
    """The numbers a run follows, the automatic arguments resolved from the data."""

    epochs: int
    lr: float
    head_lr: float
    max_length: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_every: int
    eval_batch_size: int
    processes: int
    bias_lr: float = BIAS_LR
    lora_lr: float = LORA_LR
    ema: float = 0.0  # the decay of the moving average of the weights the run evaluates and keeps; 0: none
    freeze_step: int = 0  # the step from which the layers below freeze_layer stop training (0: they never do)
    freeze_layer: int = 0
    frozen_cost: float = 1.0  # a step's (and an evaluation's) cost after the freeze, as a share of one before it
    estimate: Estimate | None = None  # the priced time of the steps and evaluations (None: no costs were given)
    cut: str | None = None  # why max_length is shorter than the workload's (None: it is not)

    @property
    def estimated_s(self) -> float | None:
        return None if self.estimate is None else self.estimate.seconds

    def full_steps(self, steps: int) -> float:
        """The first ``steps`` steps of the plan, counted in steps of the cost of one before any freeze."""
        if not self.freeze_step or steps <= self.freeze_step:
            return float(steps)
        return self.freeze_step + (steps - self.freeze_step) * self.frozen_cost

    def full_evaluations(self) -> float:
        """The plan's evaluations, counted in evaluations of the cost of one before any freeze (the one at the freeze
        step comes after it)."""
        evaluations = math.ceil(self.total_steps / self.eval_every)  # every eval_every steps and after the last
        if not self.freeze_step:
            return float(evaluations)
        before = (self.freeze_step - 1) // self.eval_every
        return before + (evaluations - before) * self.frozen_cost

    def seconds_from_run(self, first_step: int, step: int, steps_s: float, evaluation_s: float) -> float | None:
        """The whole plan's seconds, priced from a run's own: ``steps_s`` for its steps from ``first_step`` to
        ``step`` and ``evaluation_s`` for one evaluation at ``step``, each brought to the cost before any freeze
        (either may have come after it; None: no steps to price from).

        >>> plan = Plan(10, 0.01, 0.01, 16, 10, 100, 0, 10, 64, 1, freeze_step=40, freeze_layer=3, frozen_cost=0.5)
        >>> plan.seconds_from_run(0, 10, 10.0, 2.0), plan.seconds_from_run(0, 50, 45.0, 1.0)  # 1 s a step, 2 a pass
        (83.0, 83.0)
        """
        steps = self.full_steps(step) - self.full_steps(first_step)
        if steps <= 0:
            return None
        after_freeze = self.freeze_step and step >= self.freeze_step  # the evaluation at the freeze step comes after it
        per_evaluation = evaluation_s / self.frozen_cost if after_freeze else evaluation_s
        return steps_s / steps * self.full_steps(self.total_steps) + per_evaluation * self.full_evaluations()

    def resolved(self) -> dict:
        """What a checkpoint records of the plan (a resumed run must plan the same)."""
        keys = ("epochs", "lr", "head_lr", "max_length", "total_steps", "steps_per_epoch", "processes")
        return {k: getattr(self, k) for k in keys}


def make_plan(
    args: TrainingArguments,
    work: Workload,
    *,
    costs: Calibration | None = None,
    seconds_left: float | None = None,
    saved: dict | None = None,
) -> Plan:
    """The plan of a run on ``work`` with ``args``.

    ``costs`` (``estimate.calibrate``) prices it; ``seconds_left`` (what the time budget leaves after setup) fits the
    automatic length and epochs into it, which needs ``costs``; ``saved`` (``checkpoints.saved_plan``) is the plan of
    the run being resumed, whose length, epochs and steps are kept.

    >>> make_plan(TrainingArguments(), Workload((12,) * 200, (12,) * 20, 16, Method.DEEP)).epochs
    20
    """
    plan = _automatic(args, work)
    if saved is not None:
        plan = _as_saved(plan, saved, args, work)
    elif seconds_left is not None and args.epochs is None and costs is not None:
        left = seconds_left * BUDGET_SHARE
        if args.max_length is None:
            plan = _fit_length(plan, args, work, costs, left)
        plan = _fit_epochs(plan, args, work, costs, left)
    if costs is not None:
        plan = dataclasses.replace(plan, estimate=_price(plan, args, work, costs))
    return plan


def lr_schedule(total: int, warmup: int) -> Callable[[int], float]:
    """The learning-rate factor of each step (for ``LambdaLR``): a linear rise over ``warmup`` steps, then a
    linear fall to 0 at step ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def shorter_lengths(length: int) -> list[int]:
    """The cuts a time budget may choose below ``length``: halved, rounded up to a multiple of 8, down to
    MIN_BUDGET_LENGTH (none when ``length`` is already that short)."""
    out = []
    while (length := 8 * math.ceil(length / 16)) >= MIN_BUDGET_LENGTH:
        out.append(length)
    return out


# --------------------------------------------------------------------------------------------- the steps of a plan
def _automatic(args: TrainingArguments, work: Workload) -> Plan:
    """The plan without a budget: given values, else the automatic ones."""
    fast = work.start_layer > 0 or work.lora_rank > 0  # kinds that converge in a few hundred steps
    epochs = args.epochs or auto_epochs(work.n_train, args.batch_size, work.processes, late=fast)
    steps_per_epoch = math.ceil(math.ceil(work.n_train / args.batch_size) / work.processes)
    plan = Plan(
        epochs=epochs,
        lr=args.lr if args.lr is not None else auto_lr(work.method, work.start_layer),
        head_lr=args.head_lr if args.head_lr is not None else HEAD_LR,
        bias_lr=args.bias_lr if args.bias_lr is not None else BIAS_LR,
        lora_lr=args.lora_lr if args.lora_lr is not None else LORA_LR,
        ema=args.ema if args.ema is not None else EMA_DECAY,
        max_length=work.max_length,
        steps_per_epoch=steps_per_epoch,
        total_steps=epochs * steps_per_epoch,
        warmup_steps=0,
        eval_every=1,
        eval_batch_size=max(64, 2 * args.batch_size),
        processes=work.processes,
    )
    return _with_steps(plan, epochs, plan.total_steps, args, work)


def freeze_layer(start_layer: int, num_layers: int) -> int:
    """The layer below which a run that freezes its lower layers freezes them: half way from the adapter's start
    layer up (0: too few layers to freeze any).

    >>> freeze_layer(0, 6), freeze_layer(2, 6), freeze_layer(0, 12), freeze_layer(5, 6), freeze_layer(0, 1)
    (3, 4, 6, 0, 0)
    """
    layer = start_layer + (num_layers - start_layer) // 2
    return layer if layer > start_layer else 0


def _with_steps(plan: Plan, epochs: int, total_steps: int, args: TrainingArguments, work: Workload) -> Plan:
    """``plan`` with these epochs and steps; the warm-up, the evaluation spacing and the step the lower layers freeze
    at follow from them (no freezing with several processes: DDP needs every trained weight in every step)."""
    if args.eval_steps:
        eval_every = args.eval_steps
    elif epochs >= SHORT_RUN_EVALUATIONS:
        eval_every = plan.steps_per_epoch
    else:
        eval_every = math.ceil(total_steps / SHORT_RUN_EVALUATIONS)
    # only an adapter with trained parts above the freeze layer (deep tables, low-rank updates) freezes: a prompt at
    # the input alone would leave just the head to train (and the freeze was measured on the deep default only)
    upper = Method(work.method) == Method.DEEP or work.lora_rank > 0
    frozen = args.freeze_after and work.processes == 1 and upper
    layer = freeze_layer(work.start_layer, work.num_layers) if frozen else 0
    freeze_step = max(1, round(args.freeze_after * total_steps)) if layer else 0
    frozen_cost = (work.num_layers - layer) / (work.num_layers - work.start_layer) if layer else 1.0
    return dataclasses.replace(plan, epochs=epochs, total_steps=total_steps, eval_every=eval_every,
                               warmup_steps=int(args.warmup_ratio * total_steps), freeze_step=freeze_step,
                               freeze_layer=layer, frozen_cost=frozen_cost)  # fmt: skip


def _as_saved(plan: Plan, saved: dict, args: TrainingArguments, work: Workload) -> Plan:
    """The resumed run's plan: its checkpoint's cut of the length (one a budget could have chosen), epochs and steps."""
    try:
        length, epochs, steps = saved.get("max_length"), int(saved["epochs"]), int(saved["total_steps"])
    except (KeyError, TypeError, ValueError):
        return plan  # a damaged record: the checkpoint's own check says so when it is loaded
    if args.max_length is None and length in shorter_lengths(plan.max_length):
        plan = dataclasses.replace(plan, max_length=length,
                                   cut="as in the run being resumed (its time budget chose it)")  # fmt: skip
    return _with_steps(plan, epochs, steps, args, work)


def _fit_length(plan: Plan, args: TrainingArguments, work: Workload, costs: Calibration, left: float) -> Plan:
    """The longest cut of the texts (the automatic length, halved down to MIN_BUDGET_LENGTH) at which
    BUDGET_EPOCHS automatic epochs (or fewer, when the plan has fewer) fit into ``left`` seconds."""
    epochs = min(BUDGET_EPOCHS, plan.epochs)
    trial = _with_steps(plan, epochs, epochs * plan.steps_per_epoch, args, work)
    if _price(trial, args, work, costs).seconds <= left:
        return plan
    chosen = plan.max_length
    for chosen in shorter_lengths(plan.max_length):
        if _price(dataclasses.replace(trial, max_length=chosen), args, work, costs).seconds <= left:
            break
    if chosen == plan.max_length:
        return plan
    why = (f"to fit more epochs into the time budget (up to {epochs}; a longer budget, or a max_length, keeps more of "
           "each text)")  # fmt: skip
    return dataclasses.replace(plan, max_length=chosen, cut=why)


def _fit_epochs(plan: Plan, args: TrainingArguments, work: Workload, costs: Calibration, left: float) -> Plan:
    """Fewer automatic epochs, or part of one, so that the plan fits into ``left`` seconds."""
    estimate = _price(plan, args, work, costs)  # priced once: fewer epochs only change the counts
    for epochs in range(plan.epochs, 0, -1):
        candidate = _with_steps(plan, epochs, epochs * plan.steps_per_epoch, args, work)
        evaluations = math.ceil(candidate.total_steps / candidate.eval_every) if work.val_lengths else 0
        if estimate.seconds_for(candidate.total_steps, evaluations) <= left:
            return candidate
    # not even one epoch: the steps that fit beside SHORT_RUN_EVALUATIONS evaluations
    per_step = estimate.train_s / max(estimate.steps, 1)
    steps = int((left - SHORT_RUN_EVALUATIONS * estimate.seconds_per_evaluation) / max(per_step, 1e-9))
    return _with_steps(plan, 1, max(1, min(steps, plan.steps_per_epoch)), args, work)


def _price(plan: Plan, args: TrainingArguments, work: Workload, costs: Calibration) -> Estimate:
    """``plan``'s steps and evaluations priced at ``costs``, every example cut to the plan's length; those after a
    freeze of the lower layers at the share of the layers they still run."""
    estimate = estimate_run(
        costs, _cut(work.train_lengths, plan.max_length), _cut(work.val_lengths, plan.max_length),
        batch_size=args.batch_size, eval_batch_size=plan.eval_batch_size, steps=plan.total_steps,
        steps_per_epoch=plan.steps_per_epoch, eval_every=plan.eval_every, processes=plan.processes, seed=args.seed,
    )  # fmt: skip
    if not plan.freeze_step:
        return estimate
    train_s = estimate.train_s * plan.full_steps(plan.total_steps) / max(plan.total_steps, 1)
    eval_s = estimate.seconds_per_evaluation * plan.full_evaluations() if estimate.evaluations else 0.0
    return dataclasses.replace(estimate, train_s=train_s, eval_s=eval_s)


def _cut(lengths: Sequence[int] | None, length: int) -> list[int] | None:
    return None if lengths is None else [min(n, length) for n in lengths]
