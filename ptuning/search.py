"""Searching the settings that matter (method, prompt length, learning rates, epochs, low-rank updates or none, and
for deep prompts the layer they train from and bias offsets) on the validation split.

    result = search(load_dataset("reviews.csv"), n_trials=20, out_dir="runs/reviews")
    result.rows()        # one dict per trial: its settings, state (complete / pruned / cancelled), score, time
    result.model         # the best trial's adapter (also saved to out_dir)

Optuna proposes each trial's settings (TPE, seeded from ``args.seed``: the same seed and data give the same trials),
and a pruner stops weak trials early: every evaluation of a trial is reported to it through a training callback, and
a trial it prunes is cancelled after the current step (``train(cancel=...)``). The first trial is what ``train()``
would do by itself, so the best trial is never worse on the validation data than the defaults.

Only what the caller left open is searched: a field given in ``config`` (a dict) or an ``args`` value that is not
automatic (``lr``, ``head_lr``, ``epochs``) stays fixed for every trial. Every trial trains with the same seed on the
same validation split, so trials differ only by their settings.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import Method, PromptConfig, additions
from .data import Dataset, split_dataset
from .errors import ConfigError
from .metrics import primary_metric
from .model import PromptClassifier
from .train import Callback, TrainState, train
from .backbones import load_backbone
from .plan import AUTO_LORA_RANK, auto_lora_rank, auto_start_layer, late_start_layer
from .training_args import (
    HEAD_LR,
    MIN_SELECTION_EXAMPLES,
    SHORT_RUN_EVALUATIONS,
    TrainingArguments,
    auto_epochs,
    auto_lr,
)

# The space searched, around the defaults measured in BENCHMARKS.md (5 deep vectors; lr 1e-2 to 3e-2; head 1e-2).
METHODS = (Method.DEEP.value, Method.PROMPT.value, Method.P_TUNING.value)
PROMPT_LENGTHS = (5, 10, 20)
LR_RANGE = (1e-3, 1e-1)  # log-uniform, for the prompt and for the head
MIN_TRIAL_SECONDS = 1.0  # with less of a time budget left, no further trial starts
_NAMED_PLACEMENTS = ("start", "middle", "end")  # a template sets its own prompt length


@dataclass
class Trial:
    """One trial: the settings it trained with, how it ended and its best validation score."""

    number: int
    params: dict  # method, num_virtual_tokens, start_layer, bias_offsets, lora_rank, lr, head_lr, epochs: its settings
    state: str  # "complete", "pruned" (by the pruner), "cancelled" (the search was stopped) or "out of time"
    value: float | None  # the best validation value of the primary metric (accuracy, or MSE for regression)
    metrics: dict  # the best validation metrics
    steps: int  # steps trained
    total_steps: int  # steps planned
    seconds: float

    def settings_line(self) -> str:
        """``deep, 5 vectors from layer 2, bias offsets, lr 0.03, head lr 0.01, 5 epochs``: what the trial trained
        with, in one line."""
        p = self.params
        late = f" from layer {p['start_layer']}" if p.get("start_layer") else ""
        offsets = "".join(f", {a}" for a in additions(p.get("bias_offsets"), p.get("lora_rank")))
        return (f"{p['method']}, {p['num_virtual_tokens']} vectors{late}{offsets}, lr {p['lr']:.3g}, "
                f"head lr {p['head_lr']:.3g}, {p['epochs']} epochs")  # fmt: skip

    def row(self, metric_name: str) -> dict:
        """The trial as one table row (the CLI prints these; a UI can show them in a data frame)."""
        return {"trial": self.number, "state": self.state, **self.params, metric_name: self.value,
                "steps": f"{self.steps}/{self.total_steps}", "seconds": round(self.seconds, 1)}  # fmt: skip


@dataclass
class SearchResult:
    """Every trial in order, the best one (complete trials first), its adapter and where it was saved."""

    trials: list[Trial]
    best: Trial
    model: PromptClassifier
    metric_name: str
    higher_is_better: bool
    out_dir: Path | None = None
    cancelled: bool = False
    warnings: list[str] = field(default_factory=list)
    budget_reached: bool = False  # the search's time budget ended it before its last trial

    @property
    def metrics(self) -> dict:
        return self.best.metrics

    def rows(self) -> list[dict]:
        """One dict per trial, same keys in the same order: ``pandas.DataFrame(result.rows())`` is the table."""
        return [t.row(self.metric_name) for t in self.trials]


def search(
    data: Dataset,
    n_trials: int,
    *,
    eval_data: Dataset | None = None,
    config: dict | PromptConfig | None = None,
    args: TrainingArguments | None = None,
    callbacks: Sequence[Callback] = (),
    cancel: threading.Event | Callable[[], bool] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    out_dir: str | Path | None = None,
    description: str | None = None,
    pruner=None,
) -> SearchResult:
    """Train ``n_trials`` adapters with settings Optuna proposes; return them all and keep the best.

    ``config`` and ``args`` are what stays fixed (see the module docstring); ``callbacks`` hear every trial's
    training, ``on_trial`` each finished trial; ``cancel`` stops the search (the running trial after its current
    step). ``pruner`` replaces the default ``MedianPruner``. ``args.time_budget`` is the whole search's: each trial
    gets the time left, and no trial starts once it is spent. The best adapter is saved to ``out_dir``, its trial
    table in its info (``info["search"]``).

    >>> result = search(load_dataset("reviews.csv"), 20, out_dir="runs/reviews")
    >>> result.best.params, result.best.value
    ({'method': 'deep', 'num_virtual_tokens': 10, 'lr': 0.021, 'head_lr': 0.004, 'epochs': 12}, 0.88)
    """
    import optuna

    args = _checked(n_trials, args or TrainingArguments(), eval_data)
    fixed = config.to_dict() if isinstance(config, PromptConfig) else dict(config or {})
    higher = data.task == "classification"
    n_train = len(data) if eval_data is not None else len(split_dataset(data, args.val_split, args.seed)[0])
    space = _Space.around(fixed, args, n_train, len(data))
    trial_args = dataclasses.replace(args, checkpoint_dir=None)  # no checkpoints between trials
    study = optuna.create_study(
        direction="maximize" if higher else "minimize",
        sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=max(2, min(10, n_trials // 3))),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, n_trials // 4))),
    )
    study.enqueue_trial(space.defaults())  # the first trial is what train() would do: the search can only do better
    trials: list[Trial] = []
    best: tuple[Trial, PromptClassifier] | None = None
    warnings: list[str] = []
    stopped = out_of_time = False
    deadline = time.monotonic() + args.time_budget if args.time_budget else None
    for number in range(n_trials):
        if _is_set(cancel):
            stopped = True
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left < MIN_TRIAL_SECONDS and trials:
            out_of_time = True
            break
        handle = study.ask()
        params = space.suggest(handle)
        run = dict(eval_data=eval_data, config={**fixed, **_config_part(params)}, description=description,
                   args=dataclasses.replace(trial_args, **_args_part(params),
                                            time_budget=None if left is None else max(left, 1e-3)))  # fmt: skip
        trial, result = _run_trial(number, handle, data, run, callbacks, cancel)
        warnings += [w for w in [*result.warnings, *_few_texts(result)] if w not in warnings]
        if trial.state == "complete":
            study.tell(handle, trial.value)
        else:
            study.tell(handle, state=optuna.trial.TrialState.PRUNED)  # a cancelled trial counts as stopped too
        trials.append(trial)
        if best is None or _ranks_above(trial, best[0], higher):
            best = (trial, result.model)
        if on_trial is not None:
            on_trial(trial)
        if trial.state == "cancelled":
            stopped = True
            break
        if trial.state == "out of time":
            out_of_time = True
            break
    if best is None:
        raise ConfigError("the search was stopped before its first trial")
    best_trial, model = best
    metric_name = primary_metric(best_trial.metrics)[0] if best_trial.metrics else ("accuracy" if higher else "mse")
    out = SearchResult(trials, best_trial, model, metric_name, higher, None, stopped, warnings, out_of_time)
    model.info["search"] = {
        "n_trials": len(trials), "best_trial": best_trial.number, "metric": metric_name, "trials": out.rows(),
    }  # fmt: skip
    if out_dir is not None:
        model.save_pretrained(out_dir)
        out.out_dir = Path(out_dir)
    return out


@dataclass(frozen=True)
class _Space:
    """What is searched (None: fixed by the caller)."""

    methods: tuple[str, ...] | None
    lengths: tuple[int, ...] | None
    start_layers: tuple[int, ...] | None  # for deep trials: from the input, or a third of the way up
    offsets: bool  # for deep trials: with bias offsets or without
    lora: bool  # with low-rank updates (at the automatic rank) or without
    default_lora: int  # the rank train() chooses on this data
    default_start: int  # the start train() chooses for a deep adapter on this data
    late_epochs: int  # the automatic epochs of a run from a later layer
    lr: bool
    head_lr: bool
    epochs: tuple[int, int] | None  # inclusive range
    fixed: dict  # the resolved fixed values shown in the trial table

    @classmethod
    def around(cls, fixed: dict, args: TrainingArguments, n_train: int, n_given: int) -> "_Space":
        defaults = PromptConfig(labels=["a", "b"], **{k: v for k, v in fixed.items() if k not in ("labels", "task")})
        layers = load_backbone(defaults.base_model or None, args.device).num_layers
        default_lora = auto_lora_rank(defaults.method, n_given) if fixed.get("lora_rank") is None else fixed["lora_rank"]
        # train()'s rule, on all the texts given (it matters for deep trials only, where default_lora is deep's)
        default_start = auto_start_layer(Method.DEEP, layers, n_given, default_lora)
        third = late_start_layer(layers)
        open_start = fixed.get("start_layer") is None and third > 0
        placement_sets_length = str(defaults.placement).strip().lower() not in _NAMED_PLACEMENTS
        most = args.epochs or auto_epochs(n_train, args.batch_size)  # the automatic epochs a plan would take
        least = args.epochs or max(1, most // 4)
        return cls(
            methods=None if "method" in fixed else METHODS,
            lengths=None if "num_virtual_tokens" in fixed or placement_sets_length else PROMPT_LENGTHS,
            start_layers=(0, third) if open_start else None,
            offsets="bias_offsets" not in fixed,
            lora=fixed.get("lora_rank") is None,
            default_lora=default_lora,
            default_start=default_start if fixed.get("start_layer") is None else fixed["start_layer"],
            late_epochs=args.epochs or auto_epochs(n_train, args.batch_size, late=True),
            lr=args.lr is None,
            head_lr=args.head_lr is None,
            epochs=(least, most) if least < most else None,
            fixed={"method": defaults.method.value, "num_virtual_tokens": defaults.num_virtual_tokens,
                   "lr": args.lr, "head_lr": args.head_lr, "epochs": least},  # fmt: skip
        )

    def defaults(self) -> dict:
        """The searched settings at the values ``train()`` would choose by itself."""
        method = Method(self.fixed["method"] if self.methods is None else PromptConfig.method)
        start = self.default_start if method == Method.DEEP else 0
        lr = auto_lr(method, start)
        fast = start or self.default_lora  # train()'s plan: the late start's epochs for either
        epochs = self.epochs and min(max(self.late_epochs if fast else self.epochs[1], self.epochs[0]), self.epochs[1])
        values = {"method": method.value, "num_virtual_tokens": PromptConfig.num_virtual_tokens, "start_layer": start,
                  "bias_offsets": False, "lora_rank": self.default_lora, "lr": lr, "head_lr": HEAD_LR,
                  "epochs": epochs}  # fmt: skip
        deep = method == Method.DEEP
        searched = {"method": self.methods, "num_virtual_tokens": self.lengths,
                    "start_layer": deep and self.start_layers, "bias_offsets": deep and self.offsets,
                    "lora_rank": self.lora, "lr": self.lr,
                    "head_lr": self.head_lr, "epochs": self.epochs}  # fmt: skip
        return {k: v for k, v in values.items() if searched[k]}

    def suggest(self, trial) -> dict:
        """One trial's settings: searched ones from Optuna, fixed ones as given (None: the automatic value)."""
        p = dict(self.fixed)
        if self.methods:
            p["method"] = trial.suggest_categorical("method", self.methods)
        if self.lengths:
            p["num_virtual_tokens"] = trial.suggest_categorical("num_virtual_tokens", self.lengths)
        deep = p.get("method", self.fixed["method"]) == Method.DEEP.value
        if deep and self.start_layers:
            p["start_layer"] = trial.suggest_categorical("start_layer", self.start_layers)
        if deep and self.offsets:
            p["bias_offsets"] = trial.suggest_categorical("bias_offsets", (False, True))
        if self.lora:
            p["lora_rank"] = trial.suggest_categorical("lora_rank", sorted({0, self.default_lora or AUTO_LORA_RANK}))
        if self.lr:
            p["lr"] = trial.suggest_float("lr", *LR_RANGE, log=True)
        if self.head_lr:
            p["head_lr"] = trial.suggest_float("head_lr", *LR_RANGE, log=True)
        if self.epochs:
            p["epochs"] = trial.suggest_int("epochs", *self.epochs)
        return p


def _checked(n_trials: int, args: TrainingArguments, eval_data: Dataset | None) -> TrainingArguments:
    """``args``, when a search can run with them (else a ConfigError that says why)."""
    if n_trials < 1:
        raise ConfigError(f"a search needs at least one trial, not {n_trials}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # The pruner hears evaluations on the main process only: the processes would disagree on the next trial
        raise ConfigError("a search runs in one process: start it without accelerate launch")
    if args.resume:
        raise ConfigError("a search cannot resume: every trial starts afresh")
    if eval_data is None and args.val_split <= 0:
        raise ConfigError("a search scores trials on validation data: give eval_data or a val_split above 0")
    return args


def _run_trial(number: int, handle, data: Dataset, run: dict, callbacks: Sequence[Callback], cancel):
    """Train one trial (``train(data, **run)``), its evaluations reported to the pruner through ``handle``; returns
    the trial and the run's result."""
    pruned = threading.Event()
    began = time.perf_counter()
    result = train(data, **run, callbacks=[*callbacks, _Report(handle, pruned)],
                   cancel=lambda: pruned.is_set() or _is_set(cancel))  # fmt: skip
    return _finish_trial(number, result, pruned.is_set(), time.perf_counter() - began), result


def _config_part(params: dict) -> dict:
    part = {"method": params["method"], "num_virtual_tokens": params["num_virtual_tokens"]}
    return {**part, **{k: params[k] for k in ("start_layer", "bias_offsets", "lora_rank") if k in params}}


def _args_part(params: dict) -> dict:
    return {k: params[k] for k in ("lr", "head_lr", "epochs")}


class _Report(Callback):
    """Reports every evaluation to the trial; when the pruner says so, sets ``pruned`` (the run's cancel).

    Trials keep ``train()``'s own schedule (an evaluation every epoch, or every quarter of a run under
    SHORT_RUN_EVALUATIONS epochs), so each is reported at the quarter-epoch it was made at: the pruner compares
    trials at the same point of training (the ends of epochs, where every schedule evaluates) whatever their epochs."""

    def __init__(self, trial, pruned: threading.Event):
        self.trial, self.pruned = trial, pruned

    def on_evaluate(self, state: TrainState, metrics: dict) -> None:
        self.trial.report(primary_metric(metrics)[1], round(state.epoch * SHORT_RUN_EVALUATIONS))
        if self.trial.should_prune():
            self.pruned.set()


def _finish_trial(number: int, result, pruned: bool, seconds: float) -> Trial:
    s, cfg, training = result.state, result.model.config, result.model.info["training"]
    state = "pruned" if pruned else "cancelled" if s.cancelled else "out of time" if s.budget_reached else "complete"
    params = {"method": cfg.method.value, "num_virtual_tokens": cfg.num_virtual_tokens,
              "start_layer": cfg.start_layer, "bias_offsets": cfg.bias_offsets, "lora_rank": cfg.lora_rank,
              "lr": training["learning_rate"],
              "head_lr": training["head_learning_rate"], "epochs": training["epochs"]}  # fmt: skip
    return Trial(number, params, state, s.best_metric, result.metrics, s.step, s.total_steps, seconds)  # fmt: skip


def _few_texts(result) -> list[str]:
    """A warning when the trial was scored on too few validation texts to rank settings by (``train``'s rule for
    keeping the last adapter)."""
    training = result.model.info["training"]
    read = training["n_val_sample"] or training["n_val"]
    if read >= MIN_SELECTION_EXAMPLES:
        return []
    return [f"the trials were scored on {read} validation texts, too few to tell settings apart: the best trial may "
            "owe its rank to luck; a validation set of 1,000+ texts (an evaluation file, or more data) makes the search "
            "worth its time"]  # fmt: skip


def _ranks_above(trial: Trial, best: Trial, higher: bool) -> bool:
    """Complete trials rank above stopped ones; then the better value wins (the earlier trial on a tie)."""
    if (trial.state == "complete") != (best.state == "complete"):
        return trial.state == "complete"
    if trial.value is None or best.value is None:
        return best.value is None and trial.value is not None
    return trial.value > best.value if higher else trial.value < best.value


def _is_set(cancel) -> bool:
    return bool(cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set") else cancel()))
