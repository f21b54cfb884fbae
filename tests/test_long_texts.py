"""What the automatic settings choose for long texts: the base model's whole length, the head of each text, and a
note of how many were cut; a time budget, not a shorter cut, is what makes a long run shorter."""

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
