import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptuning import AdapterError, PromptClassifier
from ptuning.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG, RESUME_WEIGHTS


def scores(clf, texts):
    return torch.tensor([list(r["scores"].values()) or [r["score"]] for r in clf.predict(texts)])


@pytest.mark.parametrize(
    "options",
    [
        dict(method="prompt", pooling="model"),
        dict(method="p-tuning", pooling="mean", placement="end"),
        dict(method="p-tuning", encoder_type="LSTM", placement="middle"),
        dict(method="deep", placement="[P:2] {text} [P:1]"),
        dict(labels=[], task="regression"),
    ],
)
def test_save_then_load_gives_identical_predictions(tiny, tmp_path, options, make, texts):
    clf = make(tiny("bert"), **options)
    clf.save_pretrained(tmp_path)
    loaded = PromptClassifier.from_pretrained(tmp_path)
    assert loaded.config == clf.config
    assert torch.equal(scores(loaded, texts), scores(clf, texts))


def test_p_tuning_saves_its_encoder_so_training_can_resume(tiny, tmp_path, make):
    clf = make(tiny("bert"), method="p-tuning")
    clf.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / RESUME_WEIGHTS)) == set(clf.prompt.state_dict())
    loaded = PromptClassifier.from_pretrained(tmp_path, include_resume=True)
    for name, value in clf.prompt.state_dict().items():
        assert torch.equal(loaded.prompt.state_dict()[name], value)


def test_p_tuning_without_its_encoder_file_still_predicts(tiny, tmp_path, make, texts):
    clf = make(tiny("bert"), method="p-tuning")
    clf.save_pretrained(tmp_path)
    (tmp_path / RESUME_WEIGHTS).unlink()
    assert torch.allclose(scores(PromptClassifier.from_pretrained(tmp_path), texts), scores(clf, texts), atol=1e-6)


def test_adapter_files_follow_peft_names(tiny, tmp_path, make):
    make(tiny("roberta"), method="prompt", pooling="model").save_pretrained(tmp_path)
    tensors = load_file(tmp_path / ADAPTER_WEIGHTS)
    assert set(tensors) == {
        "prompt_embeddings",
        "base_model.classifier.dense.weight",
        "base_model.classifier.dense.bias",
        "base_model.classifier.out_proj.weight",
        "base_model.classifier.out_proj.bias",
    }
    cfg = json.loads((tmp_path / ADAPTER_CONFIG).read_text())
    assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["task_type"] == "SEQ_CLS"
    assert cfg["num_virtual_tokens"] == 3 and cfg["token_dim"] == 32 and "ptuning" not in cfg


def test_adapter_peft_cannot_express_says_so(tiny, tmp_path, make):
    make(tiny("bert"), method="prompt", placement="middle").save_pretrained(tmp_path)
    assert "places them 'middle'" in json.loads((tmp_path / ADAPTER_CONFIG).read_text())["ptuning"]["reason"]
    ours = json.loads((tmp_path / PTUNING_CONFIG).read_text())
    assert ours["peft_compatible"] is False and ours["config"]["placement"] == "middle"


def test_default_minilm_adapter_needs_under_100_kb_to_predict(tmp_path):
    PromptClassifier(labels=["negative", "positive"]).save_pretrained(tmp_path)
    needed = sum((tmp_path / f).stat().st_size for f in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG))
    assert needed < 100_000


@pytest.fixture
def saved(tiny, tmp_path, make):
    make(tiny("bert"), pooling="model").save_pretrained(tmp_path)
    return tmp_path


def _tamper_json(path, **changes):
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize(
    "tamper, complaint",
    [
        (lambda d: (d / ADAPTER_CONFIG).write_text("{not json"), "adapter_config.json is not valid JSON"),
        (
            lambda d: save_file({"prompt_embeddings": torch.zeros(3, 48)}, d / ADAPTER_WEIGHTS),
            "token_dim 32 does not match",
        ),
        (lambda d: (d / ADAPTER_CONFIG).unlink(), "no adapter_config.json"),
        (lambda d: (d / ADAPTER_WEIGHTS).unlink(), "no adapter_model.safetensors"),
        (lambda d: (d / ADAPTER_WEIGHTS).write_bytes(b"\x80\x04garbage pickle"), "not a readable safetensors"),
        (lambda d: _tamper_json(d / ADAPTER_CONFIG, peft_type="LORA"), "'LORA' is not supported"),
        (lambda d: _tamper_json(d / ADAPTER_CONFIG, task_type="CAUSAL_LM"), "'CAUSAL_LM' is not supported"),
        (lambda d: _tamper_json(d / PTUNING_CONFIG, config={"method": "magic", "labels": ["a", "b"]}), "magic"),
        (lambda d: _tamper_json(d / PTUNING_CONFIG, format_version=99), "newer ptuning"),
        (lambda d: _tamper_json(d / PTUNING_CONFIG, config={"labels": ["a", "b"], "colour": 1}), "colour"),
        (
            lambda d: (
                save_file({"prompt_embeddings": torch.zeros(3, 48)}, d / ADAPTER_WEIGHTS),
                _tamper_json(d / ADAPTER_CONFIG, token_dim=48),
            ),
            "hidden size 32",
        ),
        (
            lambda d: save_file({"prompt_embeddings": torch.zeros(5, 32)}, d / ADAPTER_WEIGHTS),
            "holds 5 vectors but the config says 3",
        ),
        (
            lambda d: save_file({"prompt_embeddings": torch.zeros(3, 32)}, d / ADAPTER_WEIGHTS),
            "no tensor 'base_model.classifier.weight'",
        ),
        (
            lambda d: save_file(
                {**load_file(d / ADAPTER_WEIGHTS), "base_model.classifier.weight": torch.zeros(7, 32)},
                d / ADAPTER_WEIGHTS,
            ),
            "has shape (7, 32), expected (3, 32)",
        ),
    ],
)
def test_bad_adapter_files_are_refused_with_the_problem_named(saved, tamper, complaint):
    tamper(saved)
    with pytest.raises(AdapterError) as err:
        PromptClassifier.from_pretrained(saved)
    assert complaint in str(err.value)


def test_a_path_that_is_neither_a_directory_nor_a_repo_id_is_a_clear_error(tmp_path):
    with pytest.raises(AdapterError, match="no adapter directory"):
        PromptClassifier.from_pretrained(str(tmp_path / "missing" / "deeper" / "dir"))


def test_push_then_load_from_the_hub_gives_identical_predictions(tiny, hub_server, make, texts):
    clf = make(tiny("bert"), method="p-tuning", placement="end")
    clf.info = {"metrics": {"accuracy": 0.75, "macro_f1": 0.7}, "dataset_description": "tiny test set"}
    url = clf.push_to_hub("alice/tiny-prompt", token=hub_server.token, endpoint=hub_server.endpoint)
    assert url.endswith("alice/tiny-prompt")
    files = hub_server.repos["alice/tiny-prompt"].commits[-1].files
    assert {ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG, RESUME_WEIGHTS, "README.md"} <= set(files)
    assert hub_server.token not in files["README.md"].decode()
    loaded = PromptClassifier.from_pretrained("alice/tiny-prompt", endpoint=hub_server.endpoint)
    assert torch.allclose(scores(loaded, texts), scores(clf, texts), atol=1e-6)
    assert loaded.info["metrics"]["accuracy"] == 0.75


def test_a_packed_zip_unpacks_to_the_same_adapter(tiny, tmp_path, make, texts):
    from ptuning.adapter_files import pack_adapter_zip, unpack_adapter_zip

    clf = make(tiny("bert"), method="p-tuning")
    archive = pack_adapter_zip(clf, tmp_path / "adapter.zip")
    (tmp_path / "out").mkdir()
    unpack_adapter_zip(str(archive), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ADAPTER_CONFIG, ADAPTER_WEIGHTS, PTUNING_CONFIG, RESUME_WEIGHTS
    ]
    assert torch.equal(scores(PromptClassifier.from_pretrained(tmp_path / "out"), texts), scores(clf, texts))
