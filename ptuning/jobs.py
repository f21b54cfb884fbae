"""A training run in the background, for a UI: ``train()`` in a thread, its progress as a stream of events.

    job = TrainingJob(data, config={"method": "deep"}, args=TrainingArguments(epochs=3))   # starts at once
    for event in job:                      # until the run ends
        show(event.kind, event.state.step)  # "step" after every step, "eval" after every evaluation
    result = job.result()                  # the TrainResult, or the run's exception raised here

``job.cancel()`` (a Stop button, a closed page) stops the run after its current step; ``result()`` is then the
adapter it would keep so far (the best evaluation's, or the latest with too few validation texts), as with
``train(cancel=...)``.

``TrainingJob(data, trials=20, ...)`` runs ``search.search`` instead: its trials' steps and evaluations come as
events, a "trial" event after each trial (``event.trial``), and ``result()`` is the ``SearchResult``.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from .search import SearchResult, Trial, search
from .train import Callback, TrainResult, TrainState, train


@dataclass(frozen=True)
class JobEvent:
    """One report of a running job: ``state`` is a copy taken at that moment (the trainer keeps changing its own)."""

    kind: Literal["step", "eval", "trial", "done"]
    state: TrainState | None = None  # None for "trial" and "done"
    trial: Trial | None = None  # for "trial"


class TrainingJob:
    """``train(data, **options)`` in a daemon thread; iterate over it for its progress, then ask for ``result()``.

    ``callbacks`` run in the training thread, before the job's own, which queues the events.
    """

    def __init__(self, data, *, callbacks: Sequence[Callback] = (), trials: int = 0, **options):
        if "cancel" in options:
            raise TypeError("a TrainingJob has its own cancel switch: call job.cancel()")
        self._cancel = threading.Event()
        self._events: queue.Queue[JobEvent] = queue.Queue()
        self._result: TrainResult | SearchResult | None = None
        self._trials = trials
        self._error: BaseException | None = None
        callbacks = [*callbacks, _Reporter(self._events)]
        self._thread = threading.Thread(
            target=self._work, args=(data, callbacks, options), name="ptuning-train", daemon=True
        )
        self._thread.start()

    def _work(self, data, callbacks: list[Callback], options: dict) -> None:
        try:
            if self._trials:
                on_trial = lambda trial: self._events.put(JobEvent("trial", trial=trial))  # noqa: E731
                self._result = search(data, self._trials, callbacks=callbacks, cancel=self._cancel, on_trial=on_trial,
                                      **options)  # fmt: skip
            else:
                self._result = train(data, callbacks=callbacks, cancel=self._cancel, **options)
        except BaseException as error:  # raised again by result(), in the caller's thread
            self._error = error
        finally:
            self._events.put(JobEvent("done"))

    def __iter__(self) -> Iterator[JobEvent]:
        """The "step" and "eval" events, in order, as they come; the iteration ends when the run does."""
        while True:
            event = self._events.get()
            if event.kind == "done":
                return
            yield event

    def caught_up(self) -> bool:
        """Whether every event so far has been taken (a UI may skip redrawing until it has)."""
        return self._events.empty()

    def cancel(self) -> None:
        """Stop the run after its current step; the adapter it keeps so far is still the result."""
        self._cancel.set()

    def result(self, timeout: float | None = None) -> TrainResult | SearchResult:
        """The run's TrainResult (a search's SearchResult) once it has ended; the exception that ended it, if any, is
        raised here."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the training run has not ended within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result


class _Reporter(Callback):
    def __init__(self, events: queue.Queue):
        self.events = events

    def on_step_end(self, state: TrainState) -> None:
        self.events.put(JobEvent("step", _snapshot(state)))

    def on_evaluate(self, state: TrainState, metrics: dict) -> None:
        self.events.put(JobEvent("eval", _snapshot(state)))


def _snapshot(state: TrainState) -> TrainState:
    # The history is copied too: the trainer appends to its own while the UI still reads this event
    return dataclasses.replace(state, history=list(state.history))
