"""Low-rank updates (``lora_rank``, LoRA-style): per-adapter ``A @ B`` added to the outputs of the backbone's linear
layers from the start layer up, per row, so adapters with them still share a pass with every other kind; saved and
loaded with the adapter, trained, resumed."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptuning.config import MAX_LORA_RANK, PromptConfig
from ptuning.errors import AdapterError, ConfigError
from ptuning.model import PromptClassifier, predict_mixed, start_from
from ptuning.offsets import LORA_SCALE, low_rank_targets, with_low_rank
from ptuning.train import TrainingArguments, train
from tests import helpers
from tests.helpers import CancelAt
from tests.helpers import batch_logits as logits

pytestmark = pytest.mark.usefixtures("one_thread")


def nudged(clf: PromptClassifier, scale: float = 0.3, seed: int = 0) -> PromptClassifier:
    """B starts at zeros (the backbone as it is): give it values, as training would."""
    return helpers.nudged(clf, scale, seed)


def test_fresh_updates_leave_the_backbone_as_it_is(tiny, family, texts, make):
    with_updates = make(tiny(family), method="deep", lora_rank=4, seed=3)
    without = make(tiny(family), method="deep", seed=3)
    with_updates.load_state_dict(without.state_dict(), strict=False)  # the same prompt and head; A random, B zeros
    torch.testing.assert_close(logits(with_updates, texts), logits(without, texts))


def test_updates_change_the_logits_and_train_while_the_backbone_stays_frozen(tiny, family, texts, make):
    clf = nudged(make(tiny(family), method="deep", lora_rank=4, seed=3))
    plain = make(tiny(family), method="deep", seed=3)
    clf.load_state_dict(plain.state_dict(), strict=False)
    assert not torch.allclose(logits(clf, texts), logits(plain, texts))
    clf.train()
    clf(**clf.collate(clf.encode(texts).examples)).sum().backward()
    reached = [a.grad is not None and bool(a.grad.abs().sum() > 0) for a in clf.low_rank.a]
    # DeBERTa's position projections run on its position table, not the batch: those updates never apply
    assert all(reached) if family != "deberta-v2" else sum(reached) > len(reached) // 2
    assert all(p.grad is None and not p.requires_grad for p in clf.backbone.model.parameters())


@pytest.mark.parametrize("placement", ["start", "end", "[P:1] {text} [P:2]"])
def test_padding_does_not_change_an_example_logits(tiny, family, placement, texts, make):
    clf = nudged(make(tiny(family), method="deep", lora_rank=4, placement=placement))
    batched = logits(clf, texts)
    for i, text in enumerate(texts):
        torch.testing.assert_close(batched[i], logits(clf, [text])[0], rtol=1e-4, atol=1e-5)


def test_a_mixed_batch_gives_each_row_its_own_updates(tiny, texts, make):
    """Ranks 2 and 4, bias offsets, a p-tuning adapter and a plain one, in one pass: each row as if alone."""
    a = nudged(make(tiny("bert"), method="deep", lora_rank=4, seed=1), seed=1)
    b = nudged(make(tiny("bert"), method="prompt", lora_rank=2, bias_offsets=True, seed=2), seed=2)
    with torch.no_grad():
        for v in b.offsets.values:
            v.add_(0.2)
    c = make(tiny("bert"), method="p-tuning", placement="end", seed=3)  # none: the backbone as it is for its rows
    d = nudged(make(tiny("bert"), method="deep", lora_rank=4, start_layer=1, seed=4), seed=4)
    adapters, rows = [a, b, c, d], [0, 1, 2, 3, 2, 1, 0, 3, 1, 2, 0]
    batch = (texts * 4)[: len(rows)]
    mixed = predict_mixed(adapters, batch, rows)
    for text, row, got in zip(batch, rows, mixed):
        alone = adapters[row].predict([text])[0]
        assert got["label"] == alone["label"] and got["score"] == pytest.approx(alone["score"], abs=1e-5)


def test_updates_cover_every_linear_layer_from_the_start_layer_up(tiny, make):
    clf = make(tiny("bert"), method="deep", lora_rank=3, start_layer=1)
    assert clf.low_rank.names and all(name.startswith("1.") for name in clf.low_rank.names)
    every = low_rank_targets(clf.backbone.layers)
    assert {n for n, _, _ in every} > set(clf.low_rank.names)
    expected = sum(3 * (i + o) for n, i, o in every if n.startswith("1."))
    assert sum(p.numel() for p in clf.low_rank.parameters()) == expected
    assert clf.num_trainable_parameters() > expected  # and the upper deep tables and the head


def test_a_pass_from_kept_states_adds_the_updates_too(tiny, texts, make):
    clf = nudged(make(tiny("roberta"), method="deep", lora_rank=4, start_layer=1))
    examples = clf.encode(texts).examples
    batch = clf.collate(examples)
    with torch.no_grad():
        torch.testing.assert_close(clf(**batch, start_states=clf.pad_states(clf.lower_states(examples))),
                                   clf(**batch), rtol=1e-4, atol=1e-5)  # fmt: skip


def test_saved_and_loaded_with_the_adapter_and_not_peft_compatible(tiny, tmp_path, texts, make):
    clf = nudged(make(tiny("bert"), method="prompt", placement="start", pooling="model", lora_rank=4))
    assert clf.peft_incompatible_reason and "low-rank" in clf.peft_incompatible_reason
    clf.save_pretrained(tmp_path / "a")
    saved = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert {k for k in saved if k.startswith("ptuning.low_rank.")} == {
        f"ptuning.low_rank.{n}.{part}" for n in clf.low_rank.names for part in ("lora_A", "lora_B")}
    assert json.loads((tmp_path / "a" / "ptuning_config.json").read_text())["config"]["lora_rank"] == 4
    again = PromptClassifier.from_pretrained(tmp_path / "a")
    torch.testing.assert_close(logits(again, texts), logits(clf, texts))


@pytest.mark.parametrize("damage", ["missing", "rank"])
def test_an_adapter_file_whose_updates_do_not_match_is_refused(tiny, tmp_path, make, damage):
    clf = make(tiny("bert"), method="deep", lora_rank=4)
    clf.save_pretrained(tmp_path / "a")
    path = tmp_path / "a" / "adapter_model.safetensors"
    tensors = load_file(path)
    key = f"ptuning.low_rank.{clf.low_rank.names[0]}.lora_A"
    if damage == "missing":
        del tensors[key]
    else:
        tensors[key] = torch.zeros(tensors[key].shape[0], 9)
    save_file(tensors, path, metadata={"format": "pt"})
    ours = json.loads((tmp_path / "a" / "ptuning_config.json").read_text())
    ours.pop("weights_sha256", None)  # the digest would refuse it first; the shape check must hold on its own
    (tmp_path / "a" / "ptuning_config.json").write_text(json.dumps(ours))
    with pytest.raises(AdapterError, match="low_rank.*missing or not of shape"):
        PromptClassifier.from_pretrained(tmp_path / "a")


@pytest.mark.parametrize("rank", [-1, MAX_LORA_RANK + 1, 2.5, True, "8"])
def test_a_rank_out_of_range_is_a_clear_error(rank):
    with pytest.raises(ConfigError, match="lora_rank"):
        PromptConfig(labels=["a", "b"], lora_rank=rank)


def test_an_adapter_without_updates_writes_no_setting_for_them():
    assert "lora_rank" not in PromptConfig(labels=["a", "b"]).to_dict()


def test_a_prompt_started_from_another_takes_its_updates(tiny, texts, make):
    source = nudged(make(tiny("bert"), method="deep", lora_rank=2, seed=5))
    clf = make(tiny("bert"), method="deep", lora_rank=2, seed=6)
    assert start_from(clf, source)
    torch.testing.assert_close(logits(clf, texts), logits(source, texts))
    with pytest.raises(ConfigError, match="lora_rank"):
        start_from(make(tiny("bert"), method="deep", lora_rank=4), source)


def test_training_moves_the_updates_and_resumes_to_the_same_adapter(tiny, tmp_path, sentiment):
    data = sentiment(64)
    config = {"base_model": tiny("bert"), "method": "deep", "num_virtual_tokens": 3, "lora_rank": 4, "start_layer": 1}
    fast = dict(epochs=3, batch_size=16, lr=0.1, head_lr=0.05, lora_lr=1e-2, patience=0, val_split=0.25, seed=0)
    whole = train(data, config=config, args=TrainingArguments(**fast, checkpoint_dir=str(tmp_path / "whole")))
    assert all(b.abs().sum() > 0 for b in whole.model.low_rank.b)
    assert whole.model.info["training"]["lora_learning_rate"] == 1e-2
    event = threading.Event()
    train(data, config=config, args=TrainingArguments(**fast, checkpoint_dir=str(tmp_path / "cut")), cancel=event,
          callbacks=[CancelAt(4, event)])  # fmt: skip
    resumed = train(data, config=config, args=TrainingArguments(**fast, checkpoint_dir=str(tmp_path / "cut"),
                                                                resume=True))  # fmt: skip
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_one_adapter_adds_its_updates_and_offsets_in_one_product_as_the_sum_they_are():
    """A one-adapter pass adds ``x @ A @ B`` and the bias offset to the output in one ``addmm`` (the offset as a row
    of B times a column of ones): the same sum, and the same gradients, as the three added one by one."""
    torch.manual_seed(0)
    x, out = torch.randn(3, 5, 8), torch.randn(3, 5, 6)
    rows = torch.zeros(3, dtype=torch.long)
    parts = [torch.randn(1, 8, 2), torch.randn(1, 2, 6), torch.randn(1, 6)]
    folded = [p.clone().requires_grad_() for p in parts]
    summed = [p.clone().requires_grad_() for p in parts]
    got = with_low_rank(out, x, *folded[:2], rows, folded[2])
    a, b, offset = summed
    want = out + ((x @ a[0]) * LORA_SCALE) @ b[0] + offset[0]
    torch.testing.assert_close(got, want)
    got.square().sum().backward()
    want.square().sum().backward()
    for f, s in zip(folded, summed):
        torch.testing.assert_close(f.grad, s.grad)
    # and two adapters (the mixed pass) add the same: row by row, its own adapter's
    two = [torch.cat([p, torch.randn_like(p)]) for p in parts]
    mixed = with_low_rank(out, x, *two[:2], torch.tensor([0, 1, 0]), two[2])
    alone = with_low_rank(out[1:2], x[1:2], *(p[1:2] for p in two[:2]), rows[:1], two[2][1:2])
    torch.testing.assert_close(mixed[1:2], alone)
    torch.testing.assert_close(mixed[[0, 2]], got.detach()[[0, 2]])
