"""Starting a new adapter from a published one's prompt (``train(init_from=...)``, ``--init-from``): the prompt
starts where the other ended, the head too when the labels are the same; a mismatch says what to change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptuning.errors import ConfigError
from ptuning.model import PromptClassifier
from tests.helpers import fast, write_csv

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published(tiny, tmp_path_factory, sentiment):
    """A trained deep adapter with bias offsets, saved as a user would publish it."""
    from ptuning.train import train

    folder = tmp_path_factory.mktemp("published")
    config = {"base_model": tiny("bert"), "method": "deep", "num_virtual_tokens": 3, "start_layer": 1,
              "bias_offsets": True}  # fmt: skip
    return train(sentiment(64), config=config, args=fast(), out_dir=folder / "a").model, folder / "a"


def frozen_steps(**overrides):
    # steps too small to move fp32 weights, and none at all for the low-rank updates
    return fast(epochs=1, lr=1e-12, head_lr=0.0, bias_lr=1e-12, lora_lr=0.0, **overrides)


def test_the_prompt_starts_at_the_published_one_and_its_settings_are_taken(published, sentiment):
    from ptuning.train import train

    source, folder = published
    result = train(sentiment(64, seed=5), init_from=folder, args=frozen_steps())
    clf = result.model
    assert (clf.config.method.value, clf.config.num_virtual_tokens, clf.config.start_layer) == ("deep", 3, 1)
    assert clf.config.bias_offsets and clf.config.base_model == source.config.base_model
    torch.testing.assert_close(clf.deep.tables, source.deep.tables)
    for mine, theirs in zip(clf.offsets.values, source.offsets.values):
        torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(clf.head.linear.weight, source.head.linear.weight)  # the same labels: head taken


def test_other_labels_get_a_new_head(published, sentiment):
    from ptuning.data import Dataset
    from ptuning.train import train

    source, folder = published
    data = sentiment(64, seed=6)
    renamed = Dataset(texts=data.texts, labels=data.labels, label_names=["bad", "good"], task="classification")
    clf = train(renamed, init_from=source, args=frozen_steps()).model
    torch.testing.assert_close(clf.deep.tables, source.deep.tables)
    assert clf.config.labels == ["bad", "good"]
    assert not torch.allclose(clf.head.linear.weight, source.head.linear.weight)


def test_a_different_prompt_setting_or_base_model_is_refused(published, sentiment, tiny):
    from ptuning.train import train

    source, _ = published
    with pytest.raises(ConfigError, match="has num_virtual_tokens 3: leave those settings at its values"):
        train(sentiment(64), init_from=source, config={"num_virtual_tokens": 5}, args=frozen_steps())
    with pytest.raises(ConfigError, match="trained on"):
        train(sentiment(64), init_from=source, config={"base_model": tiny("roberta")}, args=frozen_steps())
    with pytest.raises(ConfigError, match="init_from starts a new adapter"):
        train(sentiment(64), init_from=source, model=source, args=frozen_steps())


def test_a_p_tuning_adapter_without_its_encoder_starts_at_its_vectors(tiny, tmp_path, sentiment, make):
    from ptuning.train import train

    source = make(tiny("bert"), method="p-tuning", labels=["neg", "pos"])
    source.save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "ptuning_resume.safetensors").unlink()  # as PEFT saves it: the encoder's output only
    clf = train(sentiment(64), init_from=tmp_path / "p", args=frozen_steps()).model
    torch.testing.assert_close(clf.prompt_vectors(), source.prompt_vectors(), rtol=1e-6, atol=1e-6)


def test_the_cli_starts_from_a_published_adapter_and_refuses_it_with_a_search(published, tiny, tmp_path, sentiment):
    _, folder = published
    data = sentiment(48)
    csv = write_csv(tmp_path / "d.csv", ((t, data.label_names[y]) for t, y in zip(data.texts, data.labels)))
    base = [sys.executable, "-m", "ptuning", "train", str(csv), "--out", str(tmp_path / "out"), "--init-from",
            str(folder), "--epochs", "1", "--quiet"]  # fmt: skip
    done = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert PromptClassifier.from_pretrained(tmp_path / "out").config.start_layer == 1
    refused = subprocess.run([*base, "--search", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "drop --init-adapter, --init-from" in refused.stderr
