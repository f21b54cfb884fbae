"""The frozen backbone's precision (``PTUNING_PRECISION``): bf16 where the hardware has bf16 instructions, fp32
elsewhere. Adapters stay fp32 whatever the backbone runs in, so a file trained in one precision loads in the other;
bf16 passes keep the promises fp32 passes keep (padding, mixing, late starts, training), at bf16's tolerance."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from ptuning import backbones
from ptuning.backbones import load_backbone, precision_dtype
from ptuning.errors import ConfigError
from ptuning.model import PromptClassifier, predict_mixed
from ptuning.train import train
from tests.helpers import fast

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
CLOSE = 3e-2  # bf16 keeps 8 bits of mantissa: probabilities of a 2-layer pass agree to about 1e-2


@pytest.fixture
def bf16(monkeypatch):
    monkeypatch.setenv("PTUNING_PRECISION", "bf16")


def test_auto_is_bf16_only_where_the_cpu_has_bf16_instructions(monkeypatch):
    monkeypatch.setenv("PTUNING_PRECISION", "auto")
    monkeypatch.setattr(backbones, "_cpu_has_bf16", lambda: True)
    assert precision_dtype(CPU) == torch.bfloat16
    monkeypatch.setattr(backbones, "_cpu_has_bf16", lambda: False)
    assert precision_dtype(CPU) == torch.float32
    monkeypatch.delenv("PTUNING_PRECISION")  # unset is auto
    assert precision_dtype(CPU) == torch.float32
    assert precision_dtype(torch.device("mps")) == torch.float32


def test_a_named_precision_wins_over_the_hardware(monkeypatch):
    monkeypatch.setattr(backbones, "_cpu_has_bf16", lambda: True)
    monkeypatch.setenv("PTUNING_PRECISION", "FP32 ")
    assert precision_dtype(CPU) == torch.float32
    assert precision_dtype(CPU, "bf16") == torch.bfloat16


def test_an_unknown_precision_says_which_are_known(monkeypatch):
    monkeypatch.setenv("PTUNING_PRECISION", "fp16")
    with pytest.raises(ConfigError, match="PTUNING_PRECISION must be one of auto, fp32, bf16, not 'fp16'"):
        precision_dtype(CPU)


def test_each_precision_is_its_own_backbone_and_adapters_stay_fp32(tiny, bf16, monkeypatch, tmp_path):
    half = load_backbone(tiny("bert"), "cpu")
    monkeypatch.setenv("PTUNING_PRECISION", "fp32")
    full = load_backbone(tiny("bert"), "cpu")
    assert half is not full and half.model.dtype == torch.bfloat16 and full.model.dtype == torch.float32
    monkeypatch.setenv("PTUNING_PRECISION", "bf16")
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], method="deep", bias_offsets=True)
    assert clf.backbone is half
    assert {p.dtype for p in clf.parameters()} == {torch.float32}
    clf.save_pretrained(tmp_path / "a")
    assert {t.dtype for t in load_file(tmp_path / "a" / "adapter_model.safetensors").values()} == {torch.float32}


@pytest.mark.parametrize("method", ["prompt", "deep"])
def test_bf16_predictions_follow_fp32_ones(tiny, texts, make, method, monkeypatch):
    full = make(tiny("bert"), method=method).predict(texts)
    monkeypatch.setenv("PTUNING_PRECISION", "bf16")
    half = make(tiny("bert"), method=method).predict(texts)  # the same seed: the same adapter on a bf16 backbone
    for f, h in zip(full, half):
        assert h["scores"] == pytest.approx(f["scores"], abs=CLOSE)


@pytest.mark.parametrize("placement", ["start", "middle", "[P:1] {text} [P:2]"])
def test_bf16_padding_changes_nothing_beyond_bf16s_rounding(tiny, texts, make, bf16, placement):
    clf = make(tiny("bert"), method="deep", placement=placement)
    together = clf.predict(texts)  # the short texts padded to the long one
    for text, got in zip(texts, together):
        assert got["scores"] == pytest.approx(clf.predict([text])[0]["scores"], abs=CLOSE)


def test_bf16_mixed_batches_equal_single_predictions(tiny, texts, make, bf16):
    adapters = [make(tiny("bert"), method="deep", seed=1), make(tiny("bert"), method="prompt", seed=2),
                make(tiny("bert"), method="deep", start_layer=1, bias_offsets=True, seed=3)]  # fmt: skip
    rows = [0, 1, 2, 2, 1, 0]
    mixed = predict_mixed(adapters, texts * 2, rows)
    for text, row, got in zip(texts * 2, rows, mixed):
        assert got["scores"] == pytest.approx(adapters[row].predict([text])[0]["scores"], abs=CLOSE)


def test_bf16_lower_states_are_kept_in_bf16_and_start_the_same_pass(tiny, texts, make, bf16):
    clf = make(tiny("bert"), method="deep", start_layer=1)
    examples = clf.encode(texts).examples
    states = clf.lower_states(examples)
    assert {s.dtype for s in states} == {torch.bfloat16}  # half the memory of fp32 states
    batch = clf.collate(examples)
    with torch.no_grad():
        torch.testing.assert_close(clf(**batch, start_states=clf.pad_states(states)), clf(**batch), rtol=0, atol=CLOSE)


def test_training_on_a_bf16_backbone_learns_and_keeps_fp32_weights(tiny, sentiment, bf16):
    data = sentiment(64)
    clf = PromptClassifier(tiny("bert"), labels=data.label_names, method="deep", num_virtual_tokens=3, start_layer=1)
    assert clf.backbone.model.dtype == torch.bfloat16
    result = train(data, model=clf, args=fast(epochs=6))
    losses = [h["train_loss"] for h in result.state.history]
    assert losses[-1] < 0.9 * losses[0]
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}


def test_a_server_on_a_cpu_runs_fp32_unless_told(monkeypatch):
    from ptuning.serving.engine import ServingConfig, server_precision

    environ: dict = {}
    server_precision(ServingConfig(device="cpu"), environ)
    assert environ == {"PTUNING_PRECISION": "fp32"}  # bf16 grew a long-running server's memory (issue 24)
    told = {"PTUNING_PRECISION": "bf16"}
    server_precision(ServingConfig(device="cpu"), told)
    assert told == {"PTUNING_PRECISION": "bf16"}
    gpu: dict = {}
    server_precision(ServingConfig(device="cuda"), gpu)
    assert gpu == {}  # a GPU keeps auto: bf16 where it supports it
