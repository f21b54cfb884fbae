"""A training run in the background (ptuning.jobs): events while it runs, its result or its error after."""

import pytest

from ptuning.errors import DataError
from ptuning.jobs import TrainingJob
from ptuning.train import Callback, TrainingArguments

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(epochs=2, batch_size=16, lr=0.1, head_lr=0.05, patience=0, val_split=0.25, seed=0)


def test_events_report_every_step_and_evaluation_then_the_result(tiny, sentiment):
    job = TrainingJob(sentiment(48), config={"base_model": tiny("bert")}, args=TrainingArguments(**FAST))
    events = list(job)
    result = job.result()

    assert [e.state.step for e in events if e.kind == "step"] == list(range(1, result.state.total_steps + 1))
    assert [e.state.step for e in events if e.kind == "eval"] == [h["step"] for h in result.state.history]
    assert [e.state.history[-1] for e in events if e.kind == "eval"] == result.state.history
    assert job.caught_up()


def test_cancel_stops_the_run_after_its_current_step(tiny, sentiment):
    class CancelAtStep3(Callback):  # in the training thread, so the step is certain
        def on_step_end(self, state):
            if state.step == 3:
                job.cancel()

    job = TrainingJob(
        sentiment(48), config={"base_model": tiny("bert")}, args=TrainingArguments(**FAST), callbacks=[CancelAtStep3()]
    )
    events = list(job)
    result = job.result()
    assert result.state.cancelled and result.state.step == 3 < result.state.total_steps
    assert [e.state.step for e in events if e.kind == "step"] == [1, 2, 3]
    assert result.state.best_step == 2  # the only evaluation (every ceil(6 / 4) = 2 steps)


def test_an_error_in_the_run_is_raised_by_result(tiny, sentiment):
    data = sentiment(48)
    data.labels = [0] * len(data.labels)  # one class only
    job = TrainingJob(data, config={"base_model": tiny("bert")}, args=TrainingArguments(**FAST))
    assert list(job) == []
    with pytest.raises(DataError, match="two classes"):
        job.result()


def test_a_search_job_reports_each_trial_and_returns_the_search(tiny, sentiment):
    job = TrainingJob(sentiment(48), trials=2, config={"base_model": tiny("bert")},
                      args=TrainingArguments(**{**FAST, "val_split": 0.25}))  # fmt: skip
    events = list(job)
    trials = [e.trial for e in events if e.kind == "trial"]
    result = job.result(timeout=60)
    assert [t.number for t in trials] == [0, 1] and result.trials == trials
    assert any(e.kind == "eval" for e in events) and result.model is not None
