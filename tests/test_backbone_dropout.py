"""Dropout in the frozen backbone during training steps (``backbone_dropout``): it drops only in the step that asks
for it, never in another thread's prediction on the same shared backbone, never in the lower-layer states a late
start keeps; its masks come from the run's generator, so a run with it is reproducible and resumes to the same
adapter."""

from __future__ import annotations

import threading

import pytest
import torch

from ptuning.errors import ConfigError
from ptuning.seeding import BackboneDropout, dropout_from, run_generator
from ptuning.train import TrainingArguments, train
from tests.helpers import CancelAt
from tests.helpers import batch_logits as logits

pytestmark = pytest.mark.usefixtures("one_thread")

# Llama's layers have no dropout modules (only an attention rate its attention reads in training mode, which a
# shared backbone never is): backbone_dropout changes nothing there.
DROPPING = ("bert", "roberta", "distilbert", "deberta-v2", "gpt2")


def stepped(clf, texts, seed: int, rate: float) -> torch.Tensor:
    with dropout_from(run_generator(seed), backbone=rate):
        return logits(clf, texts)


@pytest.mark.parametrize("name", DROPPING)
def test_the_backbone_drops_only_in_a_step_that_asks_with_the_runs_masks(tiny, name, texts, make):
    clf = make(tiny(name), method="deep", lora_rank=2, seed=1).eval()  # eval: the head's own dropout stays off
    assert any(isinstance(m, BackboneDropout) for m in clf.backbone.model.modules())
    plain = logits(clf, texts)
    torch.testing.assert_close(stepped(clf, texts, 0, 0.0), plain)  # asked for none
    dropped = stepped(clf, texts, 0, 0.3)
    assert not torch.allclose(dropped, plain)
    torch.testing.assert_close(stepped(clf, texts, 0, 0.3), dropped)  # the same generator, the same masks
    assert not torch.allclose(stepped(clf, texts, 1, 0.3), dropped)
    torch.testing.assert_close(logits(clf, texts), plain)  # and after the step, off again


def test_llama_has_no_dropout_layers_to_turn_on(tiny, texts, make):
    clf = make(tiny("llama"), method="deep", seed=1).eval()
    torch.testing.assert_close(stepped(clf, texts, 0, 0.3), logits(clf, texts))


def test_another_threads_prediction_on_the_shared_backbone_never_drops(tiny, texts, make):
    training = make(tiny("bert"), method="deep", seed=1).eval()
    other = make(tiny("bert"), method="prompt", seed=2).eval()  # the same frozen backbone, another user's adapter
    assert other.backbone is training.backbone
    expected = logits(other, texts)
    seen: list = []
    with dropout_from(run_generator(0), backbone=0.5):
        assert not torch.allclose(logits(other, texts), expected)  # this thread's step drops...
        thread = threading.Thread(target=lambda: seen.append(logits(other, texts)))
        thread.start()
        thread.join()
    torch.testing.assert_close(seen[0], expected)  # ...the other thread's prediction does not


def test_kept_lower_states_are_the_frozen_layers_own_in_a_step_that_drops(tiny, texts, make):
    late = make(tiny("bert"), method="deep", start_layer=1, seed=1)
    examples = late.encode(texts).examples
    outside = late.lower_states(examples)
    with dropout_from(run_generator(0), backbone=0.5):
        inside = late.lower_states(examples)
    for a, b in zip(outside, inside):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("start_layer", [0, 1])
def test_training_with_backbone_dropout_is_reproducible_and_resumes_to_the_same_adapter(tiny, tmp_path, sentiment,
                                                                                       start_layer):
    data = sentiment(64)
    config = {"base_model": tiny("bert"), "method": "deep", "num_virtual_tokens": 3, "lora_rank": 2,
              "start_layer": start_layer}  # fmt: skip
    fast = dict(epochs=2, batch_size=16, lr=0.1, head_lr=0.05, lora_lr=1e-2, patience=0, val_split=0.25, seed=0)

    def run(rate: float, name: str, **more):
        args = TrainingArguments(**fast, backbone_dropout=rate, checkpoint_dir=str(tmp_path / name), **more)
        return train(data, config=config, args=args)

    whole = run(0.2, "whole")
    assert whole.model.info["training"]["backbone_dropout"] == 0.2
    again = run(0.2, "again")
    without = run(0.0, "without")
    event = threading.Event()
    args = TrainingArguments(**fast, backbone_dropout=0.2, checkpoint_dir=str(tmp_path / "cut"))
    train(data, config=config, args=args, cancel=event, callbacks=[CancelAt(3, event)])
    resumed = run(0.2, "cut", resume=True)
    state = whole.model.state_dict()
    assert any(not torch.equal(without.model.state_dict()[k], v) for k, v in state.items())  # it did drop
    for k, v in state.items():
        assert torch.equal(again.model.state_dict()[k], v), k
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_a_rate_of_one_or_more_is_refused():
    with pytest.raises(ConfigError, match="backbone_dropout"):
        TrainingArguments(backbone_dropout=1.0)
