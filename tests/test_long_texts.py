"""What the automatic settings choose for long texts: a capped length, fewer epochs when positions pile up."""

from __future__ import annotations

import pytest

from ptuning import training_args
from ptuning.train import TrainingArguments, plan_training, train
from ptuning.training_args import LONG_TEXT_TOKENS, POSITION_BUDGET, auto_epochs, auto_max_length


def test_the_automatic_length_of_long_texts_stops_at_the_long_text_cap():
    assert auto_max_length([40] * 100, 512) == 40  # short texts: their own length
    assert auto_max_length([300] * 100, 512) == LONG_TEXT_TOKENS  # long ones: the cap
    assert auto_max_length([300] * 100, 128) == 128  # a base model's smaller limit comes first


def test_epochs_fit_the_position_budget_only_when_an_epoch_computes_many_positions():
    sentences = 1800 * 32  # movie polarity: 1,800 sentences of 32 positions on average with the prompt
    assert auto_epochs(1800, 32, 1, sentences) == auto_epochs(1800, 32) == 18
    long = 400 * LONG_TEXT_TOKENS
    assert auto_epochs(400, 32, 1, long) == -(-POSITION_BUDGET // long) < auto_epochs(400, 32)
    assert auto_epochs(50, 32, 1, 10**9) == 1  # never under one epoch


@pytest.fixture
def small_caps(monkeypatch):
    """The tiny test models read 128 positions at most: scale the long-text cap and the budget down to them."""
    monkeypatch.setattr(training_args, "LONG_TEXT_TOKENS", 48)
    monkeypatch.setattr(training_args, "POSITION_BUDGET", 48 * 32 * 3)


def test_a_run_on_long_texts_cuts_them_at_the_cap_and_says_so(tiny, sentiment, small_caps):
    data = sentiment(32, long=32)  # every text 100 filler words longer than the cap
    result = train(data, config={"base_model": tiny("bert"), "num_virtual_tokens": 2},
                   args=TrainingArguments(batch_size=8, val_split=0.25, device="cpu"))  # fmt: skip
    training = result.model.info["training"]
    assert training["max_length"] == 48
    assert any("longer than 48 tokens" in w and "max_length" in w for w in result.warnings)
    assert training["epochs"] == -(-48 * 32 * 3 // (24 * 48))  # the position budget, not the step budget's 20
    assert plan_training(data, config={"base_model": tiny("bert"), "num_virtual_tokens": 2},
                         args=TrainingArguments(batch_size=8, val_split=0.25, device="cpu")).epochs == training["epochs"]


def test_a_given_length_or_epochs_stand(tiny, sentiment, small_caps):
    data = sentiment(32, long=32)
    args = TrainingArguments(batch_size=8, val_split=0.25, device="cpu", max_length=96, epochs=2)
    result = train(data, config={"base_model": tiny("bert"), "num_virtual_tokens": 2}, args=args)
    assert result.model.info["training"]["max_length"] == 96 and result.model.info["training"]["epochs"] == 2
