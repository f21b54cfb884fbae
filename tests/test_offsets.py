"""Bias offsets (``bias_offsets``, BitFit-style): per-adapter vectors added to the outputs of the backbone's linear
layers and LayerNorms, per row, so adapters with them still share a pass; saved and loaded with the adapter."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptuning.config import PromptConfig
from ptuning.errors import AdapterError
from ptuning.model import PromptClassifier, predict_mixed
from ptuning.offsets import offset_targets
from ptuning.train import TrainingArguments, train
from tests.helpers import CancelAt, nudged
from tests.helpers import batch_logits as logits

pytestmark = pytest.mark.usefixtures("one_thread")


def shifted(clf: PromptClassifier, scale: float = 0.5, seed: int = 0) -> PromptClassifier:
    return nudged(clf, scale, seed)


def test_zero_offsets_leave_the_backbone_as_it_is(tiny, family, texts, make):
    with_offsets = make(tiny(family), method="deep", bias_offsets=True, seed=3)
    without = make(tiny(family), method="deep", seed=3)
    torch.testing.assert_close(logits(with_offsets, texts), logits(without, texts))


def test_offsets_change_the_logits_and_train_while_the_backbone_stays_frozen(tiny, family, texts, make):
    clf = shifted(make(tiny(family), method="deep", bias_offsets=True, seed=3))
    plain = make(tiny(family), method="deep", seed=3)
    assert not torch.allclose(logits(clf, texts), logits(plain, texts))
    clf.train()
    clf(**clf.collate(clf.encode(texts).examples)).sum().backward()
    reached = [v.grad is not None and bool(v.grad.abs().sum() > 0) for v in clf.offsets.values]
    # DeBERTa's position projections run on its position table, not the batch: those offsets never apply
    assert all(reached) if family != "deberta-v2" else sum(reached) > len(reached) // 2
    assert all(p.grad is None and not p.requires_grad for p in clf.backbone.model.parameters())


@pytest.mark.parametrize("placement", ["start", "end", "[P:1] {text} [P:2]"])
def test_padding_does_not_change_an_example_logits(tiny, family, placement, texts, make):
    clf = shifted(make(tiny(family), method="deep", bias_offsets=True, placement=placement))
    batched = logits(clf, texts)
    for i, text in enumerate(texts):
        torch.testing.assert_close(batched[i], logits(clf, [text])[0], rtol=1e-4, atol=1e-5)


def test_a_mixed_batch_gives_each_row_its_own_offsets(tiny, texts, make):
    a = shifted(make(tiny("bert"), method="deep", bias_offsets=True, seed=1), seed=1)
    b = shifted(make(tiny("bert"), method="prompt", bias_offsets=True, seed=2), seed=2)
    c = make(tiny("bert"), method="deep", seed=3)  # none: the backbone as it is for its rows
    adapters, rows = [a, b, c], [0, 1, 2, 2, 1, 0, 1, 2, 0]
    batch = (texts * 3)[: len(rows)]
    mixed = predict_mixed(adapters, batch, rows)
    for text, row, got in zip(batch, rows, mixed):
        alone = adapters[row].predict([text])[0]
        assert got["label"] == alone["label"] and got["score"] == pytest.approx(alone["score"], abs=1e-5)


def test_offsets_cover_the_layers_from_the_start_layer_up(tiny, make):
    clf = make(tiny("bert"), method="deep", bias_offsets=True, start_layer=1)
    assert clf.offsets.names and all(name.startswith("1.") for name in clf.offsets.names)
    every = offset_targets(clf.backbone.layers)
    assert {n for n, _ in every} > set(clf.offsets.names)
    assert sum(v.numel() for v in clf.offsets.values) == sum(w for n, w in every if n.startswith("1."))


def test_a_pass_from_kept_states_adds_the_offsets_too(tiny, texts, make):
    clf = shifted(make(tiny("roberta"), method="deep", bias_offsets=True, start_layer=1))
    examples = clf.encode(texts).examples
    batch = clf.collate(examples)
    with torch.no_grad():
        torch.testing.assert_close(clf(**batch, start_states=clf.pad_states(clf.lower_states(examples))),
                                   clf(**batch), rtol=1e-4, atol=1e-5)  # fmt: skip


def test_saved_and_loaded_with_the_adapter_and_not_peft_compatible(tiny, tmp_path, texts, make):
    clf = shifted(make(tiny("bert"), method="prompt", placement="start", pooling="model", bias_offsets=True))
    assert clf.peft_incompatible_reason and "biases" in clf.peft_incompatible_reason
    clf.save_pretrained(tmp_path / "a")
    saved = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert {k for k in saved if k.startswith("ptuning.bias_offsets.")} == {
        "ptuning.bias_offsets." + n for n in clf.offsets.names}
    assert json.loads((tmp_path / "a" / "ptuning_config.json").read_text())["config"]["bias_offsets"] is True
    again = PromptClassifier.from_pretrained(tmp_path / "a")
    torch.testing.assert_close(logits(again, texts), logits(clf, texts))


def test_an_adapter_file_without_its_offsets_is_refused(tiny, tmp_path, make):
    clf = make(tiny("bert"), method="deep", bias_offsets=True)
    clf.save_pretrained(tmp_path / "a")
    path = tmp_path / "a" / "adapter_model.safetensors"
    tensors = {k: v for k, v in load_file(path).items() if not k.startswith("ptuning.bias_offsets.0.")}
    save_file(tensors, path, metadata={"format": "pt"})
    ours = json.loads((tmp_path / "a" / "ptuning_config.json").read_text())
    ours.pop("weights_sha256", None)  # the digest would refuse it first; the shape check must hold on its own
    (tmp_path / "a" / "ptuning_config.json").write_text(json.dumps(ours))
    with pytest.raises(AdapterError, match="bias_offsets.0.*missing"):
        PromptClassifier.from_pretrained(tmp_path / "a")


def test_an_adapter_without_offsets_writes_no_setting_for_them():
    assert "bias_offsets" not in PromptConfig(labels=["a", "b"]).to_dict()


def test_training_moves_the_offsets_and_resumes_to_the_same_adapter(tiny, tmp_path, sentiment):
    data = sentiment(64)
    config = {"base_model": tiny("bert"), "method": "deep", "num_virtual_tokens": 3, "bias_offsets": True,
              "start_layer": 1}  # fmt: skip
    fast = dict(epochs=3, batch_size=16, lr=0.1, head_lr=0.05, bias_lr=1e-2, patience=0, val_split=0.25, seed=0)
    whole = train(data, config=config, args=TrainingArguments(**fast, checkpoint_dir=str(tmp_path / "whole")))
    assert any(v.abs().sum() > 0 for v in whole.model.offsets.values)
    assert whole.model.info["training"]["bias_learning_rate"] == 1e-2
    event = threading.Event()
    train(data, config=config, args=TrainingArguments(**fast, checkpoint_dir=str(tmp_path / "cut")), cancel=event,
          callbacks=[CancelAt(4, event)])  # fmt: skip
    resumed = train(data, config=config, args=TrainingArguments(**fast, checkpoint_dir=str(tmp_path / "cut"),
                                                                resume=True))  # fmt: skip
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_a_backbone_is_hooked_for_offsets_only_once_an_adapter_has_them(tmp_path):
    from tests.tiny_models import build_tiny

    fresh = build_tiny("bert", tmp_path / "bert")  # a backbone no other test has loaded
    plain = PromptClassifier(fresh, labels=["a", "b"], method="deep")
    hooked = lambda: sum(bool(m._forward_hooks) for layer in plain.backbone.layers for m in layer.modules())  # noqa: E731
    assert hooked() == 0  # PyTorch's fast call path, for every module of every layer
    PromptClassifier(fresh, labels=["a", "b"], method="deep", bias_offsets=True)
    assert hooked() == len(offset_targets(plain.backbone.layers)) > 0
    PromptClassifier(fresh, labels=["a", "b"], method="prompt", bias_offsets=True)
    assert hooked() == len(offset_targets(plain.backbone.layers))  # once, not once per adapter
