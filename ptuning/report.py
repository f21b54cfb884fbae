"""One account of a training run, for every face: how it ended and which adapter it kept (``outcome``), and the
plan a run follows in words (``plan_line``). The CLI and the app word these facts their own way, and nothing else
decides them.

    facts = outcome(train(data))
    facts.ended, facts.kept, facts.metric     # ("stopped early", "last", 0.84)
"""

from __future__ import annotations

from dataclasses import dataclass

from .estimate import duration
from .train import TrainResult, TrainState

ENDINGS = ("done", "stopped early", "cancelled", "time budget")


@dataclass(frozen=True)
class Outcome:
    """How a run ended and what it kept.

    ``ended`` is one of ENDINGS; ``kept`` is "best" (the best evaluation's adapter) or "last" (the latest one: too few
    validation texts to choose by); ``metric`` is the kept adapter's validation score (None without validation)."""

    ended: str
    kept: str
    step: int
    total_steps: int
    seconds: float
    kept_step: int | None
    metric_name: str | None
    metric: float | None
    validation_texts: int  # what one evaluation read (a sample of a large validation set)
    patience: int
    trainable: int

    @property
    def kept_words(self) -> str:
        """``best`` or ``latest``, as the sentences say it."""
        return "best" if self.kept == "best" else "latest"


def outcome(result: TrainResult) -> Outcome:
    """The facts of a finished (or stopped) run."""
    s, training = result.state, result.model.info.get("training", {})
    if s.cancelled:
        ended = "cancelled"
    elif s.budget_reached:
        ended = "time budget"
    elif s.stopped_early:
        ended = "stopped early"
    else:
        ended = "done"
    return Outcome(
        ended=ended, kept=s.kept, step=s.step, total_steps=s.total_steps, seconds=s.elapsed_s, kept_step=s.best_step,
        metric_name=s.metric_name, metric=s.best_metric,
        validation_texts=training.get("n_val_sample") or training.get("n_val") or 0,
        patience=training.get("patience") or 0, trainable=result.model.num_trainable_parameters(),
    )  # fmt: skip


def plan_line(state: TrainState) -> str:
    """``about 4 min 20 s of training (1008 steps, 16 epochs, texts cut at 64 tokens)``: the plan a run follows and
    its estimated time (empty time: not estimated yet)."""
    time = f"about {duration(state.estimated_s)} of training" if state.estimated_s is not None else "training"
    return f"{time} ({state.total_steps} steps, {state.epochs} epochs, texts cut at {state.max_length} tokens)"
