"""Estimating a run before it starts, and fitting it into a time budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptuning import estimate
from ptuning.estimate import Calibration, _fit, duration, estimate_run
from ptuning.train import Callback, TrainingArguments, plan_training, train

ROOT = Path(__file__).resolve().parent.parent


def adapter(tiny) -> dict:
    return {"base_model": tiny("bert"), "num_virtual_tokens": 4}


@pytest.fixture
def priced(monkeypatch):
    """Make every calibration return ``priced.calibration`` (known costs instead of this machine's timings)."""

    class Priced:
        calibration = Calibration(train_linear=1e-3, train_quadratic=0.0, eval_linear=1e-4, eval_quadratic=0.0)

    monkeypatch.setattr("ptuning.train.calibrate", lambda *a, **k: Priced.calibration)
    return Priced


class SlowSteps(Callback):
    """Every step takes at least ``seconds`` (the test's stand-in for a slow device)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_step_end(self, state):
        time.sleep(self.seconds)


def test_the_fit_recovers_linear_and_quadratic_costs():
    a, b = 2e-4, 3e-6
    cost = lambda length: 8 * length * (a + b * length)  # noqa: E731
    assert _fit(8, 32, cost(32), 256, cost(256)) == pytest.approx((a, b))
    # lengths too close to tell the two apart: all of it is priced per token, at the longer batch's rate
    assert _fit(8, 30, 1.0, 32, 1.1) == pytest.approx((1.1 / (8 * 32), 0.0))


def test_an_estimate_prices_each_planned_batch_and_each_evaluation():
    cal = Calibration(train_linear=1e-3, train_quadratic=0.0, eval_linear=1e-4, eval_quadratic=0.0)
    lengths = [10] * 4 + [20] * 4  # batches of 4, grouped by length: one of 4x10, one of 4x20 tokens
    e = estimate_run(cal, lengths, [10] * 8, batch_size=4, eval_batch_size=8, steps=6, steps_per_epoch=2,
                     eval_every=2)  # fmt: skip
    per_step = (4 * 10 + 4 * 20) * 1e-3 / 2
    assert e.train_s == pytest.approx(6 * per_step)
    assert e.evaluations == 3 and e.seconds_per_evaluation == pytest.approx(8 * 10 * 1e-4)
    assert e.seconds == pytest.approx(6 * per_step + 3 * 8 * 10 * 1e-4)
    assert e.seconds_per_epoch == pytest.approx(2 * per_step)


def test_durations_read_as_people_say_them():
    assert [duration(s) for s in (4.4, 200, 3900)] == ["4 s", "3 min 20 s", "1 h 05 min"]


def test_a_run_without_a_budget_times_nothing_in_advance_and_estimates_from_its_own_steps(tiny, sentiment, one_thread):
    estimate._cache.clear()
    result = train(sentiment(64), config=adapter(tiny), args=TrainingArguments(epochs=2, batch_size=8))
    assert len(estimate._cache) == 0  # no calibration: the first real step is the first step
    assert result.state.estimated_s > 0
    assert result.model.info["training"]["estimated_seconds"] == round(result.state.estimated_s, 1)


def test_budget_runs_are_timed_in_advance_and_calibrations_are_kept(tiny, sentiment, one_thread):
    estimate._cache.clear()
    budget = TrainingArguments(batch_size=8, time_budget=600)
    result = train(sentiment(64), config=adapter(tiny), args=budget)
    assert result.state.estimated_s > 0
    assert len(estimate._cache) == 1  # a second run on the same backbone and kind of adapter re-uses it
    train(sentiment(64, seed=1), config=adapter(tiny), args=budget)
    assert len(estimate._cache) == 1


def test_automatic_epochs_shrink_to_fit_the_budget(tiny, sentiment, priced, one_thread):
    # steps priced at 10 ms a token, so that a third of the plan (about 42 s) leaves loading and tokenising on a busy
    # machine far inside the budget; at 1 ms (4 s) two full-suite runs reached the budget before the last step
    priced.calibration = Calibration(train_linear=1e-2, train_quadratic=0.0, eval_linear=1e-3, eval_quadratic=0.0)
    data = sentiment(64)
    free = plan_training(data, config=adapter(tiny), args=TrainingArguments(batch_size=8, patience=0))  # priced
    budget = free.estimated_s / 3  # a third of what the automatic plan would take
    # the run itself is far faster than the priced one: it runs its whole (shorter) plan
    fitted = train(data, config=adapter(tiny), args=TrainingArguments(batch_size=8, patience=0, time_budget=budget))
    assert fitted.state.epochs < free.epochs
    assert fitted.state.estimated_s <= budget
    assert fitted.state.step == fitted.state.total_steps and not fitted.state.budget_reached


def test_less_than_an_epoch_fits_a_part_of_one(tiny, sentiment, priced, one_thread):
    priced.calibration = Calibration(train_linear=1.0, train_quadratic=0.0, eval_linear=1e-4, eval_quadratic=0.0)
    # a step of 8 examples of ~10 tokens is priced ~100 s: a 400 s budget holds a few steps, not an epoch of 7
    result = train(sentiment(64), config=adapter(tiny), args=TrainingArguments(batch_size=8, time_budget=400))
    assert result.state.epochs == 1 and 1 <= result.state.total_steps < 7
    assert result.state.step == result.state.total_steps  # the plan's part of the epoch, not the rest of it
    assert result.state.history[-1]["step"] == result.state.total_steps


def test_training_stops_at_the_budget_with_the_best_adapter_so_far(tiny, sentiment, tmp_path, one_thread):
    budget = 3.0
    start = time.monotonic()
    result = train(
        sentiment(64), config=adapter(tiny), out_dir=tmp_path / "out", callbacks=[SlowSteps(0.2)],
        args=TrainingArguments(epochs=50, batch_size=8, patience=0, time_budget=budget,
                               checkpoint_dir=str(tmp_path / "ckpt")),
    )  # fmt: skip
    took = time.monotonic() - start
    state = result.state
    assert state.budget_reached and 0 < state.step < state.total_steps
    assert took < budget * 1.5  # it stopped at the budget, not at the 50 epochs (~70 s at 0.2 s a step)
    assert state.history[-1]["step"] == state.step  # the last steps were evaluated before stopping
    best = max(h["accuracy"] for h in state.history)
    assert result.metrics["accuracy"] == best  # the adapter returned and saved is the best one
    saved = json.loads((tmp_path / "out" / "ptuning_config.json").read_text())
    assert saved["info"]["metrics"]["accuracy"] == best
    trainer_state = json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())
    assert trainer_state["step"] == state.step  # nothing is lost: resuming continues from here


def test_a_resumed_run_follows_the_plan_its_budget_made(tiny, sentiment, priced, tmp_path, one_thread):
    data, ckpt = sentiment(64), str(tmp_path / "ckpt")
    free = plan_training(data, config=adapter(tiny), args=TrainingArguments(batch_size=8, patience=0))  # priced
    budget = free.estimated_s / 3
    first = train(data, config=adapter(tiny), args=TrainingArguments(batch_size=8, patience=0, time_budget=budget,
                                                                     checkpoint_dir=ckpt))  # fmt: skip
    priced.calibration = Calibration(train_linear=1.0, train_quadratic=0.0, eval_linear=1.0, eval_quadratic=0.0)
    again = train(data, config=adapter(tiny), args=TrainingArguments(batch_size=8, patience=0, time_budget=budget,
                                                                     checkpoint_dir=ckpt, resume=True))  # fmt: skip
    assert again.state.total_steps == first.state.total_steps  # not re-fitted with the (now far slower) prices


def test_the_cli_prints_the_estimate_first_and_honours_the_budget(tiny, tmp_path):
    import csv

    rows = [("a great film", "pos"), ("an awful film", "neg")] * 40
    data = tmp_path / "data.csv"
    with data.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    done = subprocess.run(
        [sys.executable, "-m", "ptuning", "train", str(data), "--out", str(tmp_path / "out"), "--model", tiny("bert"),
         "--time-budget", "120", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("estimate: about ") and "time budget of 2 min 00 s" in first
    assert "--time-budget SECONDS" in subprocess.run(
        [sys.executable, "-m", "ptuning", "train", "--help"], cwd=ROOT, capture_output=True, text=True
    ).stdout


def test_calibration_times_one_length_when_every_text_is_cut_at_the_limit(tiny, sentiment, monkeypatch):
    from ptuning import PromptClassifier

    clf = PromptClassifier(tiny("bert"), labels=["neg", "pos"], num_virtual_tokens=2)
    timed = []
    def fake_time(model, batch):  # the padded length, as _time measures it, and fixed seconds
        timed.append(len(batch))
        return len(model.collate(list(batch))["input_ids"][0]), 1.0, 0.5

    monkeypatch.setattr(estimate, "_time", fake_time)
    monkeypatch.setattr(estimate, "_cache", {})
    same = clf.encode(sentiment(8).texts, None, 8).examples  # all cut to the same 8 positions
    estimate.calibrate(clf, same, batch_size=4)
    assert len(timed) == 1
    monkeypatch.setattr(estimate, "_cache", {})
    timed.clear()
    varied = clf.encode(sentiment(16, long=4).texts, None, 128).examples  # the median short, the longest long
    estimate.calibrate(clf, varied, batch_size=4)
    assert len(timed) == 2


def test_a_late_start_is_timed_from_kept_lower_states_and_calibrated_apart(tiny, sentiment, monkeypatch):
    from ptuning import PromptClassifier

    monkeypatch.setattr(estimate, "_cache", {})
    early = PromptClassifier(tiny("bert"), labels=["neg", "pos"], method="deep", start_layer=0)
    late = PromptClassifier(tiny("bert"), labels=["neg", "pos"], method="deep", start_layer=1)
    passes = []
    forward = PromptClassifier.forward

    def spy(self, *args, start_states=None, **kwargs):
        passes.append((self.config.start_layer, start_states is not None))
        return forward(self, *args, start_states=start_states, **kwargs)

    monkeypatch.setattr(PromptClassifier, "forward", spy)
    examples = early.encode(sentiment(8).texts, None, 16).examples
    estimate.calibrate(early, examples, batch_size=4)
    estimate.calibrate(late, examples, batch_size=4)  # same shape otherwise: not the early adapter's calibration
    assert {p for p in passes if p[0] == 0} == {(0, False)}
    assert {p for p in passes if p[0] == 1} == {(1, True)}  # every timed pass of the late adapter starts at layer 1
