"""What the automatic settings choose for long texts: the base model's whole length, the head of each text, and a
note of how many were cut; without a budget nothing shorter. A time budget that cannot hold a few epochs at that
length cuts the texts shorter until it can."""

from __future__ import annotations

from ptuning.train import TrainingArguments, plan_training, train
from ptuning.training_args import auto_epochs, auto_max_length


def test_the_automatic_length_of_long_texts_is_the_base_models_limit():
    assert auto_max_length([40] * 100, 512) == 40  # short texts: their own length
    assert auto_max_length([900] * 100, 512) == 512  # long ones: all the base model reads
    assert auto_max_length([900] * 99 + [30], 128) == 128


def test_long_texts_keep_the_epochs_of_their_number():
    assert auto_epochs(369, 32) == 20  # 369 man pages: 12 steps an epoch, at most 20 epochs like any small set


def config(tiny) -> dict:
    return {"base_model": tiny("bert"), "num_virtual_tokens": 2}


def test_a_run_on_long_texts_keeps_their_heads_up_to_the_limit_and_says_how_many_were_cut(tiny, sentiment):
    import dataclasses

    short = sentiment(32, long=32)  # texts of 105 words; three times over: longer than the tiny model's 128 positions
    data = dataclasses.replace(short, texts=[" ".join([t] * 3) for t in short.texts])
    result = train(data, config=config(tiny), args=TrainingArguments(epochs=1, batch_size=8, val_split=0.25))
    assert result.model.info["training"]["max_length"] == 128
    assert any("longer than 128 tokens" in w and "were truncated" in w for w in result.warnings)
    encoded = result.model.encode(data.texts[:1], None, 128).examples[0]
    head = result.model.encode([" ".join(data.texts[0].split()[:5])], None, 128).examples[0]
    assert encoded.input_ids[: len(head.input_ids) - 1] == head.input_ids[:-1]  # the head is kept, the tail cut


def test_a_time_budget_shortens_a_long_run_by_its_epochs(tiny, sentiment, monkeypatch):
    from ptuning.estimate import Calibration

    slow = Calibration(train_linear=1e-2, train_quadratic=0.0, eval_linear=1e-4, eval_quadratic=0.0)
    monkeypatch.setattr("ptuning.train.calibrate", lambda *a, **k: slow)  # a step of 8 x 128 tokens: ~10 s
    data = sentiment(64, long=64)
    free = plan_training(data, config=config(tiny), args=TrainingArguments(batch_size=8))
    fitted = plan_training(data, config=config(tiny), args=TrainingArguments(batch_size=8, time_budget=300))
    assert free.epochs == 20 and fitted.epochs < free.epochs and fitted.estimated_s <= 0.9 * 300


def long_texts(sentiment, n: int = 64):
    """``n`` texts of ~315 words: all cut at the tiny model's 128 positions."""
    import dataclasses

    short = sentiment(n, long=n)
    return dataclasses.replace(short, texts=[" ".join([t] * 3) for t in short.texts])


def plan(tiny, sentiment, monkeypatch, **args):
    """The plan of 64 long texts (cut at the tiny model's 128) with a step of 8 x 128 tokens priced ~10 s, every step
    at that price (no freeze of the lower layers, whose later steps cost less: test_freeze.py)."""
    from ptuning.estimate import Calibration

    slow = Calibration(train_linear=1e-2, train_quadratic=0.0, eval_linear=1e-4, eval_quadratic=0.0)
    monkeypatch.setattr("ptuning.train.calibrate", lambda *a, **k: slow)
    args = TrainingArguments(batch_size=8, freeze_after=0, **args)
    return plan_training(long_texts(sentiment), config=config(tiny), args=args)


def test_a_budget_too_short_for_ten_epochs_cuts_long_texts_until_they_fit(tiny, sentiment, monkeypatch):
    from ptuning.plan import BUDGET_EPOCHS

    assert BUDGET_EPOCHS == 10  # the numbers below are priced for it
    free = plan(tiny, sentiment, monkeypatch)
    assert free.max_length == 128 and free.epochs == 20  # no budget: the whole length, every epoch
    # 8 steps an epoch of ~10 s at 128 tokens (~82 s an epoch), ~41 s at 64: 600 s (540 to plan) hold 6 epochs at
    # 128 tokens, 13 at 64
    tight = plan(tiny, sentiment, monkeypatch, time_budget=600)
    assert tight.max_length == 64 and tight.epochs >= 10 and tight.estimated_s <= 0.9 * 600
    assert any("at 64 tokens, not the automatic 128" in w and "time budget" in w for w in tight.warnings)
    assert not any("longer than 128 tokens" in w for w in tight.warnings)  # the old count is replaced, not kept
    roomy = plan(tiny, sentiment, monkeypatch, time_budget=1000)  # 10 epochs at 128 tokens fit: nothing is cut
    assert roomy.max_length == 128 and 10 <= roomy.epochs < 20
    hopeless = plan(tiny, sentiment, monkeypatch, time_budget=300)  # not even at 64: the shortest cut, fewer epochs
    assert hopeless.max_length == 64 and 1 <= hopeless.epochs < 10


def test_a_budget_leaves_a_given_length_or_given_epochs_alone(tiny, sentiment, monkeypatch):
    assert plan(tiny, sentiment, monkeypatch, time_budget=300, max_length=128).max_length == 128
    assert plan(tiny, sentiment, monkeypatch, time_budget=300, epochs=2).max_length == 128


def test_a_run_cut_by_its_budget_trains_at_the_cut_and_resumes_there_without_it(tiny, sentiment, monkeypatch,
                                                                                 tmp_path):  # fmt: skip
    import threading

    from ptuning.estimate import Calibration
    from ptuning.train import Callback

    slow = Calibration(train_linear=1e-2, train_quadratic=0.0, eval_linear=1e-4, eval_quadratic=0.0)
    monkeypatch.setattr("ptuning.train.calibrate", lambda *a, **k: slow)  # priced slow, trains fast
    stop = threading.Event()

    class StopAtThree(Callback):
        def on_step_end(self, state):
            if state.step == 3:
                stop.set()

    data, ckpt = long_texts(sentiment), str(tmp_path / "ckpt")
    budget = TrainingArguments(batch_size=8, time_budget=600, checkpoint_dir=ckpt, freeze_after=0)  # priced as above
    first = train(data, config=config(tiny), cancel=stop, callbacks=[StopAtThree()], args=budget)
    assert first.state.cancelled and first.state.step == 3
    again = train(data, config=config(tiny), out_dir=tmp_path / "out",  # no budget this time
                  args=TrainingArguments(batch_size=8, checkpoint_dir=ckpt, resume=True, freeze_after=0))  # fmt: skip
    assert again.state.max_length == 64 and again.state.total_steps == first.state.total_steps
    assert again.state.step > 3 and again.model.info["training"]["max_length"] == 64
