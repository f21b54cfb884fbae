"""How to train: one dataclass (SetFit's ``training_args.py``), and the rules that fill in its automatic values.

Every field has a default that works; the ``None`` ones are chosen from the data when the run starts. The help
texts are read by the CLI (``--help``) and the app (widget info), so they are written for users; the metadata
follows the convention of ``options.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import Method
from .errors import ConfigError

# Learning rates when none is given. Prompt vectors live in the embedding space and move far from their init only
# with steps much larger than a head needs; p-tuning's encoder and deep tables amplify each step, so they take less.
PROMPT_LR = {Method.PROMPT: 3e-2, Method.P_TUNING: 1e-2, Method.DEEP: 1e-2}
HEAD_LR = 1e-2
# The bias offsets (``bias_offsets``): BitFit trains them at 1e-4 to 1e-3 on BERT over many epochs. In our few
# hundred steps 1e-3 moved them too little (movie 2,000, 5 epochs: 0.807, no gain); at 1e-2 (BENCHMARKS.md, issue 22;
# 3 seeds each) they read 0.874 on 600 question types against 0.858 without, and 0.822 on movie 2,000 against 0.818.
BIAS_LR = 1e-2
# The low-rank updates (``lora_rank``): PEFT's LoRA of every linear layer at rank 8 read 0.852 on the full movie
# split at 2e-3 (3 epochs, BENCHMARKS.md, issue 22), where the query-and-value LoRA at 5e-4 read 0.823.
LORA_LR = 2e-3
# The moving average of the adapter's weights (``ema``; ``averaging.py``) that evaluations score and a run keeps: on
# the questions, movie 2,000 and the full movie split (BENCHMARKS.md, "A moving average of the weights"; 3 seeds
# each) 0.897, 0.825 and 0.850 against the weights' own 0.894, 0.824 and 0.848, in the same time. Its window grows
# with the run (about a ninth of the steps so far), so the decay binds only after about 2,000 steps.
EMA_DECAY = 0.995
# The share of a run's steps after which the lower half of the layers an adapter trains freezes (``freeze_after``;
# FreezeOut, Brock et al. 2017): the later steps and evaluations run only the upper half, from states computed once.
# On this project's 2-core fp32 CPU (BENCHMARKS.md, "Freezing the lower layers"; 3 seeds each) 0.4 took the questions
# from 192-239 s to 130-160 s (0.895 against 0.897) and movie 2,000 from 216-227 s to 157-186 s (0.827 against 0.826).
FREEZE_AFTER = 0.4

# A deep adapter that trains from a later layer (start_layer above 0) runs the upper layers only, from states kept
# since the first epoch, and takes fewer, larger steps: on movie 2,000 (BENCHMARKS.md, issue 22; 3 seeds each) 5
# epochs at 3e-2 read 0.817 where 16 epochs at 1e-2 read 0.822 in three times the time, and 4 epochs at 5e-2 0.799.
# Its automatic epochs: about LATE_STEP_BUDGET steps, at least MIN_LATE_EPOCHS (which binds from about 2,400 texts on).
# On the full movie split (8,454 texts, rank-4 updates, the lower layers frozen after 40 %; fp32, 3 seeds each) 4
# epochs read 0.849 ± 0.005 in 641-657 s against 5 epochs' 0.849 ± 0.005 in 801-830 s (BENCHMARKS.md, issue 22,
# seventh session): the fifth epoch bought nothing.
LATE_PROMPT_LR = 3e-2
LATE_STEP_BUDGET, MIN_LATE_EPOCHS = 300, 4

# Automatic epochs: about STEP_BUDGET optimizer steps in all, at least MIN_AUTO_EPOCHS and at most MAX_AUTO_EPOCHS
# passes. Batches of 32 from 200 examples get 20 epochs (the prompt needs many passes), 5,000 get 7, 50,000 get 1:
# a few minutes for a few hundred examples on a laptop CPU; early stopping ends a run that stops improving.
STEP_BUDGET = 1000
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 1, 20
# Long texts keep these epochs and their full length: on 410 man pages (BENCHMARKS.md, "Training that fits the time")
# capping either (256 tokens, or about 1M token positions in all) cost 6.6 points of accuracy for a third or half of
# the time; a user who would rather pay that sets --max-length, --epochs or --time-budget.
# Automatic max_length: this percentile of the training examples' lengths (prompt and special tokens included),
# rounded up to a multiple of 8: a few outliers are truncated instead of setting the cost of every long batch.
LENGTH_PERCENTILE = 99
# Evaluations during training read at most this many validation examples (a fixed random sample); the best adapter
# is then scored on all of them. An evaluation costs in proportion to its examples: a large validation file otherwise
# costs as much as many training steps.
EVAL_SAMPLE = 1000
# Automatic patience (``patience`` empty): a run stops after PATIENCE evaluations without a better validation score.
# With at least MIN_SELECTION_EXAMPLES validation texts per evaluation it keeps its best evaluation's adapter; with
# fewer, the adapter at the stop. One evaluation's accuracy on a few texts is too noisy to choose by (standard errors
# of 1.3 points at 1,000 texts, 2.8 at 200, 5 at 60): on held-out splits of 60 and 200 texts the best evaluation was
# an early lucky peak, and the adapter at the stop read 0.6-0.8 points higher on test data, with under half the
# spread between seeds (BENCHMARKS.md, "Which adapter a run keeps").
PATIENCE = 5
MIN_SELECTION_EXAMPLES = 1000
# With eval_steps unset, runs of fewer than this many epochs evaluate (and checkpoint) every 1/SHORT_RUN_EVALUATIONS
# of their steps, rounded up, and after the last step: at most this many times (a 6-step run: at steps 2, 4 and 6).
SHORT_RUN_EVALUATIONS = 4


@dataclass
class TrainingArguments:
    """How to train; every field has a default that works, the automatic ones (None) adapt to the data."""

    epochs: int | None = field(
        default=None,
        metadata={
            "help": f"Passes over the training data; empty: chosen from its size (about {STEP_BUDGET} steps, "
            f"{MIN_AUTO_EPOCHS} to {MAX_AUTO_EPOCHS} epochs; with low-rank updates or from a later start layer about "
            f"{LATE_STEP_BUDGET} steps, at least {MIN_LATE_EPOCHS})."
        },
    )
    lr: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the prompt (and its encoder or deep tables); empty: by method ("
            + ", ".join(f"{m.value} {lr:g}" for m, lr in PROMPT_LR.items())
            + f"; from a later start layer {LATE_PROMPT_LR:g})."
        },
    )
    head_lr: float | None = field(
        default=None, metadata={"help": f"Learning rate of the classification head; empty: {HEAD_LR:g}."}
    )
    bias_lr: float | None = field(
        default=None, metadata={"help": f"Learning rate of the bias offsets (bias_offsets); empty: {BIAS_LR:g}."}
    )
    lora_lr: float | None = field(
        default=None, metadata={"help": f"Learning rate of the low-rank updates (lora_rank); empty: {LORA_LR:g}."}
    )
    batch_size: int = field(
        default=32,
        metadata={"help": "Examples per training step and process (N processes train on batches of N x this)."},
    )
    warmup_ratio: float = field(
        default=0.1,
        metadata={
            "help": "Share of the steps in which the learning rate rises from 0; then it falls linearly to 0.",
            "metavar": "F",
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    backbone_dropout: float = field(
        default=0.0,
        metadata={
            "help": "Dropout in the frozen backbone's layers during training steps (as fine-tuning trains with); "
            "0: none.",
            "metavar": "P",
        },
    )
    freeze_after: float = field(
        default=FREEZE_AFTER,
        metadata={
            "help": "After this share of the steps, the lower half of the layers the adapter trains stops training "
            "and what they make of each text is computed once, so later steps and evaluations run only the upper half "
            "(faster; FreezeOut, Brock et al. 2017). Deep adapters and those with low-rank updates only; 0: never.",
            "metavar": "F",
        },
    )
    ema: float | None = field(
        default=None,
        metadata={
            "help": "Decay of the moving average of the adapter's weights that evaluations score and the run keeps "
            "(Polyak averaging; its window grows with the run, about a ninth of the steps so far, up to 1/(1-D) "
            f"steps); 0: none, the weights as the last step left them. Empty: {EMA_DECAY:g}.",
            "metavar": "D",
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip gradients to this norm; 0 turns clipping off."})
    eval_steps: int | None = field(
        default=None,
        metadata={
            "help": f"Evaluate (and checkpoint) every N steps; empty: after every epoch, or, with fewer than "
            f"{SHORT_RUN_EVALUATIONS} epochs, every 1/{SHORT_RUN_EVALUATIONS} of the steps (rounded up): at most "
            f"{SHORT_RUN_EVALUATIONS} times."
        },
    )
    eval_sample: int = field(
        default=EVAL_SAMPLE,
        metadata={
            "help": "Evaluate on a fixed random sample of at most this many validation examples during training, then "
            "the best adapter on all of them; 0: always all.",
            "metavar": "N",
        },
    )
    patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without a better validation score and keep the best; 0: never "
            f"stop early (the best kept). Empty: {PATIENCE}, keeping the best with {MIN_SELECTION_EXAMPLES:,}+ "
            "validation texts and the adapter at the stop with fewer (too few to choose the best by)."
        },
    )
    seed: int = field(default=42, metadata={"help": "Random seed: the same seed and data give the same adapter."})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": f"Longest input in tokens, prompt included; longer texts are truncated (the head is kept). Empty: "
            f"the {LENGTH_PERCENTILE}th percentile of the training texts, capped by the base model's limit."
        },
    )
    device: str | None = field(
        default=None,
        metadata={"help": "cuda, cuda:1, mps or cpu; empty: the best available (cuda, mps, then cpu).", "metavar": "D"},
    )
    val_split: float = field(
        default=0.1,
        metadata={
            "help": "Fraction of the data held out for validation when no evaluation file is given; 0: none.",
            "metavar": "F",
        },
    )
    checkpoint_dir: str | None = field(
        default=None, metadata={"help": "Save a checkpoint here at every evaluation, to resume from."}
    )
    time_budget: float | None = field(
        default=None,
        metadata={
            "help": "Seconds the whole run may take (loading, tokenising and evaluating included): automatic epochs "
            "are chosen to fit it, and training stops at it with the adapter it keeps so far (the best evaluation's, or the "
            "latest with too few validation texts). Empty: no limit.",
            "metavar": "SECONDS",
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "Continue the run saved in checkpoint_dir.",
            "cli_help": "Continue the interrupted run saved in DIR/checkpoint.",
        },
    )

    def __post_init__(self) -> None:
        checks = [
            (self.epochs is None or self.epochs >= 1, "epochs must be at least 1"),
            (self.lr is None or self.lr > 0, "lr must be positive"),
            (self.head_lr is None or self.head_lr >= 0, "head_lr must not be negative"),
            (self.bias_lr is None or self.bias_lr >= 0, "bias_lr must not be negative"),
            (self.lora_lr is None or self.lora_lr >= 0, "lora_lr must not be negative"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must not be negative"),
            (0 <= self.backbone_dropout < 1, "backbone_dropout must be in [0, 1)"),
            (0 <= self.freeze_after < 1, "freeze_after must be in [0, 1): 0 never freezes"),
            (self.ema is None or 0 <= self.ema < 1, "ema must be in [0, 1): 0 turns the average off"),
            (self.max_grad_norm >= 0, "max_grad_norm must not be negative"),
            (self.eval_steps is None or self.eval_steps >= 1, "eval_steps must be at least 1"),
            (self.patience is None or self.patience >= 0, "patience must not be negative"),
            (self.max_length is None or self.max_length >= 2, "max_length must be at least 2"),
            (self.eval_sample >= 0, "eval_sample must be 0 (all) or more"),
            (0 <= self.val_split < 1, "val_split must be in [0, 1)"),
            (self.time_budget is None or self.time_budget > 0, "time_budget must be a positive number of seconds"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def auto_lr(method: Method, start_layer: int = 0) -> float:
    """The prompt's automatic learning rate: ``PROMPT_LR`` of the method, or ``LATE_PROMPT_LR`` from a later layer.

    >>> auto_lr(Method.DEEP), auto_lr(Method.DEEP, start_layer=2)
    (0.01, 0.03)
    """
    return LATE_PROMPT_LR if start_layer > 0 else PROMPT_LR[Method(method)]


def auto_epochs(n_train: int, batch_size: int, processes: int = 1, late: bool = False) -> int:
    """Epochs for about ``STEP_BUDGET`` steps: many passes over small data, one or two over large data; for a
    ``late`` start (``start_layer`` above 0), about ``LATE_STEP_BUDGET`` steps and at least ``MIN_LATE_EPOCHS``.

    >>> auto_epochs(180, 32), auto_epochs(4500, 32), auto_epochs(45000, 32)
    (20, 8, 1)
    >>> auto_epochs(2000, 32, late=True), auto_epochs(8454, 32, late=True), auto_epochs(600, 32, late=True)
    (5, 4, 16)
    """
    steps_per_epoch = math.ceil(n_train / (batch_size * processes))
    if late:
        return max(MIN_LATE_EPOCHS, min(MAX_AUTO_EPOCHS, math.ceil(LATE_STEP_BUDGET / steps_per_epoch)))
    return max(MIN_AUTO_EPOCHS, min(MAX_AUTO_EPOCHS, math.ceil(STEP_BUDGET / steps_per_epoch)))


def auto_max_length(lengths: Sequence[int], limit: int) -> int:
    """The ``LENGTH_PERCENTILE``th percentile of ``lengths``, rounded up to a multiple of 8, capped by ``limit``.

    >>> auto_max_length([10] * 99 + [500], 512), auto_max_length([900] * 100, 512)
    (16, 512)
    """
    q = math.ceil(float(np.percentile(lengths, LENGTH_PERCENTILE)))
    return min(max(lengths), 8 * math.ceil(q / 8), limit)
