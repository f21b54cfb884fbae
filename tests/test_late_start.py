"""Deep prompts that train from a later layer (``start_layer``): the prompts below it stay as they start, so a run
computes the lower layers' states once and every step starts from them. The pass from kept states is the whole pass;
the adapter saves, loads, mixes and resumes like any deep adapter."""

from __future__ import annotations

import threading

import pytest
import torch

from ptuning.config import PromptConfig
from ptuning.errors import ConfigError
from ptuning.model import PromptClassifier, predict_mixed
from ptuning.train import train
from tests.helpers import CancelAt, fast

pytestmark = pytest.mark.usefixtures("one_thread")


def late(tiny, family: str = "bert", **options) -> dict:
    return {"base_model": tiny(family), "method": "deep", "num_virtual_tokens": 3, "start_layer": 1, **options}


@pytest.mark.parametrize("placement", ["start", "middle", "[P:1] {text} [P:2]"])
def test_a_pass_from_the_lower_states_equals_the_whole_pass(tiny, family, placement, texts, make):
    clf = make(tiny(family), method="deep", start_layer=1, placement=placement)
    examples = clf.encode(texts).examples
    batch = clf.collate(examples)  # mostly padding: the three texts differ in length
    with torch.no_grad():
        whole = clf(**batch)
        started = clf(**batch, start_states=clf.pad_states(clf.lower_states(examples)))
    torch.testing.assert_close(started, whole, rtol=1e-4, atol=1e-5)


def test_lower_states_of_a_batch_are_each_examples_alone(tiny, texts, make):
    clf = make(tiny("bert"), method="deep", start_layer=1)
    examples = clf.encode(texts).examples
    together = clf.lower_states(examples)
    for e, states in zip(examples, together):
        torch.testing.assert_close(clf.lower_states([e])[0], states, rtol=1e-4, atol=1e-5)
        assert states.shape == (len(e.input_ids), clf.backbone.hidden_size)


def test_only_the_prompts_from_the_start_layer_up_get_gradients(tiny, texts, make):
    clf = make(tiny("bert"), method="deep", start_layer=1).train()
    clf(**clf.collate(clf.encode(texts).examples)).sum().backward()
    assert not clf.prompt.embedding.weight.requires_grad  # the input prompt feeds layer 0, below the start
    assert clf.deep.tables.grad is not None and clf.deep.tables.grad.abs().sum() > 0


def test_tables_below_the_start_layer_get_no_gradient(tiny, texts):
    config = PromptConfig(base_model=tiny("bert"), labels=["a", "b"], method="deep", start_layer=1)
    clf = PromptClassifier(config=config)
    assert clf.deep.frozen == 0  # start 1: table 0 feeds layer 1, which trains
    two = PromptClassifier(config=PromptConfig(**{**config.to_dict(), "start_layer": 0}))
    assert two.prompt.embedding.weight.requires_grad


def test_start_layer_needs_the_deep_method_and_a_layer_the_backbone_has(tiny):
    with pytest.raises(ConfigError, match="deep method"):
        PromptConfig(labels=["a", "b"], method="prompt", start_layer=1)
    with pytest.raises(ConfigError, match="below the backbone's 2 layers"):
        PromptClassifier(tiny("bert"), labels=["a", "b"], method="deep", start_layer=2)
    with pytest.raises(ConfigError, match="0 or more"):
        PromptConfig(labels=["a", "b"], method="deep", start_layer=-1)


def test_the_setting_is_written_only_when_used(tiny, tmp_path, make):
    assert "start_layer" not in PromptConfig(labels=["a", "b"]).to_dict()  # older ptuning still loads the adapter
    clf = make(tiny("bert"), method="deep", start_layer=1)
    clf.save_pretrained(tmp_path / "a")
    again = PromptClassifier.from_pretrained(tmp_path / "a")
    assert again.config.start_layer == 1
    torch.testing.assert_close(again.deep.tables, clf.deep.tables)


def test_training_keeps_the_lower_prompts_and_learns(tiny, sentiment):
    data = sentiment(64)
    clf = PromptClassifier(tiny("bert"), labels=data.label_names, method="deep", num_virtual_tokens=3, start_layer=1)
    prompt, tables = clf.prompt.embedding.weight.detach().clone(), clf.deep.tables.detach().clone()
    result = train(data, model=clf, args=fast(epochs=6))
    assert torch.equal(clf.prompt.embedding.weight, prompt)  # below the start: as it started
    assert not torch.equal(clf.deep.tables, tables)
    losses = [h["train_loss"] for h in result.state.history]
    assert losses[-1] < 0.9 * losses[0]  # a tiny random backbone learns slowly from its last layer alone


def test_kept_states_train_the_same_adapter_as_states_computed_every_step(tiny, sentiment, monkeypatch):
    data = sentiment(64)
    kept = train(data, config=late(tiny), args=fast())
    monkeypatch.setattr("ptuning.train.LOWER_STATES_BYTES", 0)  # nothing fits: every step computes its states
    recomputed = train(data, config=late(tiny), args=fast())
    for k, v in kept.model.state_dict().items():
        torch.testing.assert_close(recomputed.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)
    assert kept.state.step == recomputed.state.step == 9


def test_a_late_adapter_mixes_with_others_in_one_batch(tiny, texts, make):
    late_one = make(tiny("bert"), method="deep", start_layer=1, seed=1)
    other = make(tiny("bert"), method="prompt", seed=2)
    rows = [0, 1, 0, 1, 1, 0]
    mixed = predict_mixed([late_one, other], texts * 2, rows)
    alone = [late_one.predict([t])[0] if r == 0 else other.predict([t])[0] for t, r in zip(texts * 2, rows)]
    for m, a in zip(mixed, alone):
        assert m["label"] == a["label"] and m["score"] == pytest.approx(a["score"], abs=1e-5)


def test_cancel_then_resume_gives_the_same_adapter_as_one_run(tiny, tmp_path, sentiment):
    data = sentiment(64)
    whole = train(data, config=late(tiny), args=fast(checkpoint_dir=str(tmp_path / "whole")))
    event = threading.Event()
    cut_args = fast(checkpoint_dir=str(tmp_path / "cut"))
    cut = train(data, config=late(tiny), args=cut_args, cancel=event, callbacks=[CancelAt(4, event)])
    resumed = train(data, config=late(tiny), args=fast(checkpoint_dir=str(tmp_path / "cut"), resume=True))
    assert cut.state.cancelled and cut.state.step == 4
    assert resumed.state.step == whole.state.step
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_computing_lower_states_never_stops_another_threads_pass_on_the_shared_backbone(tiny, texts, make):
    import threading

    late = make(tiny("bert"), method="deep", start_layer=1)
    other = make(tiny("bert"), method="prompt", seed=4)  # the same frozen backbone, another user's adapter
    expected = other.predict(texts)
    examples = late.encode(texts * 20).examples
    failures: list = []
    done = threading.Event()

    def predict_meanwhile():
        while not done.is_set():
            try:
                got = other.predict(texts)
                assert [g["label"] for g in got] == [e["label"] for e in expected]
            except BaseException as error:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(error))
                return

    thread = threading.Thread(target=predict_meanwhile)
    thread.start()
    try:
        for _ in range(20):
            late.lower_states(examples, batch_size=4)
    finally:
        done.set()
        thread.join()
    assert failures == []


def test_deep_adapters_on_enough_texts_start_a_third_of_the_way_up_by_default(tiny, sentiment, monkeypatch, tmp_path):
    from ptuning import plan
    from ptuning.training_args import LATE_PROMPT_LR, MIN_LATE_EPOCHS

    monkeypatch.setattr(plan, "LATE_START_TEXTS", 64)  # the tiny data stands for 1,000 texts
    result = train(sentiment(64), config={"base_model": tiny("bert"), "method": "deep", "lora_rank": 0},
                   args=fast(epochs=None, lr=None), out_dir=tmp_path / "a")  # fmt: skip
    assert result.model.config.start_layer == 1  # a third of the tiny backbone's 2 layers, at least 1
    assert result.state.epochs >= MIN_LATE_EPOCHS and result.model.info["training"]["learning_rate"] == LATE_PROMPT_LR
    assert PromptClassifier.from_pretrained(tmp_path / "a").config.start_layer == 1
    fewer = train(sentiment(48), config={"base_model": tiny("bert"), "method": "deep"}, args=fast(epochs=1))
    assert fewer.model.config.start_layer == 0
    given = train(sentiment(64), config={"base_model": tiny("bert"), "method": "deep", "start_layer": 0},
                  args=fast(epochs=1))  # fmt: skip
    assert given.model.config.start_layer == 0
    table = train(sentiment(64), config={"base_model": tiny("bert"), "method": "prompt"}, args=fast(epochs=1))
    assert table.model.config.start_layer == 0
    assert table.model.config.lora_rank == 0  # the other methods take no low-rank updates by default
    # with low-rank updates (the deep default's): the later start too, then from the input again on more texts
    updated = train(sentiment(64), config={"base_model": tiny("bert"), "method": "deep"}, args=fast(epochs=1))
    assert (updated.model.config.start_layer, updated.model.config.lora_rank) == (1, plan.AUTO_LORA_RANK)
    monkeypatch.setattr(plan, "LORA_EARLY_TEXTS", 64)  # the tiny data stands for 5,000 texts
    early = train(sentiment(64), config={"base_model": tiny("bert"), "method": "deep"}, args=fast(epochs=None, lr=None))
    assert (early.model.config.start_layer, early.model.config.lora_rank) == (0, plan.AUTO_LORA_RANK)
    assert early.state.epochs >= MIN_LATE_EPOCHS  # the late start's few hundred steps: the updates converge as fast


def test_an_adapter_built_without_data_starts_at_the_input(tiny):
    config = PromptConfig(base_model=tiny("bert"), labels=["a", "b"], method="deep")
    assert config.start_layer is None and "start_layer" not in config.to_dict()
    assert PromptClassifier(config=config).config.start_layer == 0
