"""Pushing and downloading adapters, against a local Hub that the real huggingface_hub client talks to; the card."""

import json
import socket
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, constants
from safetensors.torch import save_file

from ptuning.errors import AdapterError, ConfigError, HubError
from ptuning.hub import download_adapter, is_repo_id, push_adapter
from ptuning.model_card import CardFacts, make_model_card, public_app_url, read_card_data

REPO = "test-user/sentiment-prompt"
CARD_INFO = {
    "base_model": "prajjwal1/bert-tiny",
    "labels": ["negative", "positive"],
    "task": "classification",
    "method": "p-tuning",
    "placement": "[P] {text}",
    "num_virtual_tokens": 4,
    "peft_compatible": True,
    "metrics": {"accuracy": 0.83, "macro_f1": 0.82},
    "dataset_description": "Movie reviews, 2000 for training.",
    "adapter_bytes": 1234,
    "trainable_params": 32,
    "training": {"epochs": 5, "lr": 3e-3, "batch_size": 32, "seed": 0},
    "repo_id": REPO,
}


def write_adapter(folder: Path, *, seed: int = 0, resume: bool = False, card: dict | None = None) -> Path:
    """A small adapter directory as ptuning saves one: PEFT config, safetensors weights, our config."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    config = {"base_model_name_or_path": "prajjwal1/bert-tiny", "num_virtual_tokens": 4, "peft_type": "P_TUNING"}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (folder / "ptuning_config.json").write_text(json.dumps({"method": "p-tuning", "seed": seed}, indent=2))
    save_file({"prompt_embeddings": torch.randn(4, 8, generator=generator)}, folder / "adapter_model.safetensors")
    if resume:
        save_file({"step": torch.tensor([seed])}, folder / "ptuning_resume.safetensors")
    if card is not None:
        make_model_card(card).save(folder / "README.md")
    return folder


def closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


# -- push and download ----------------------------------------------------------------------------


def test_download_returns_the_pushed_bytes(hub_server, tmp_path):
    folder = write_adapter(tmp_path / "adapter", card=CARD_INFO)

    url = push_adapter(folder, REPO, token=hub_server.token, endpoint=hub_server.endpoint)
    local = download_adapter(REPO, endpoint=hub_server.endpoint)

    assert url == f"{hub_server.endpoint}/{REPO}"
    for name in ("adapter_config.json", "adapter_model.safetensors", "ptuning_config.json", "README.md"):
        assert (local / name).read_bytes() == (folder / name).read_bytes()


def test_push_is_one_commit_of_the_adapter_files_only(hub_server, tmp_path):
    folder = write_adapter(tmp_path / "adapter", card=CARD_INFO)
    (folder / "training_log.txt").write_text("not for the Hub")

    push_adapter(folder, REPO, token=hub_server.token, endpoint=hub_server.endpoint, commit_message="First prompt")

    repo = hub_server.repos[REPO]
    assert [c.title for c in repo.commits] == ["initial commit", "First prompt"]
    assert sorted(repo.head.files) == [
        ".gitattributes", "README.md", "adapter_config.json", "adapter_model.safetensors", "ptuning_config.json"
    ]


def test_pushing_again_to_the_same_repo_adds_a_commit(hub_server, tmp_path):
    push_adapter(write_adapter(tmp_path / "a", seed=0), REPO, token=hub_server.token, endpoint=hub_server.endpoint)
    second = write_adapter(tmp_path / "b", seed=1)

    push_adapter(second, REPO, token=hub_server.token, endpoint=hub_server.endpoint)

    repo = hub_server.repos[REPO]
    assert len(repo.commits) == 3  # the Hub's initial commit, then one per push
    assert repo.head.files["adapter_model.safetensors"] == (second / "adapter_model.safetensors").read_bytes()


def test_push_removes_adapter_files_the_folder_no_longer_has(hub_server, tmp_path):
    old = write_adapter(tmp_path / "old", resume=True, card=CARD_INFO)
    push_adapter(old, REPO, token=hub_server.token, endpoint=hub_server.endpoint)

    push_adapter(write_adapter(tmp_path / "new", seed=1), REPO, token=hub_server.token, endpoint=hub_server.endpoint)

    files = hub_server.repos[REPO].head.files
    assert "ptuning_resume.safetensors" not in files and "README.md" not in files


def test_push_creates_a_private_repo_when_asked(hub_server, tmp_path):
    push_adapter(write_adapter(tmp_path / "a"), REPO, token=hub_server.token, endpoint=hub_server.endpoint, private=True)

    assert hub_server.repos[REPO].private


def test_resume_state_is_downloaded_only_when_asked(hub_server, tmp_path):
    folder = write_adapter(tmp_path / "adapter", resume=True)
    push_adapter(folder, REPO, token=hub_server.token, endpoint=hub_server.endpoint)

    assert not (download_adapter(REPO, endpoint=hub_server.endpoint) / "ptuning_resume.safetensors").exists()
    local = download_adapter(REPO, endpoint=hub_server.endpoint, include_resume=True)
    assert (local / "ptuning_resume.safetensors").read_bytes() == (folder / "ptuning_resume.safetensors").read_bytes()


def test_download_never_fetches_pickled_weights(hub_server, tmp_path):
    folder = write_adapter(tmp_path / "adapter")
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    hub_server.commit(REPO, {**files, "pytorch_model.bin": b"pickle", "adapter_model.bin": b"pickle"})

    local = download_adapter(REPO, endpoint=hub_server.endpoint)

    assert not list(local.glob("*.bin"))
    assert not [path for _, path in hub_server.requests if path.endswith(".bin")]


def test_download_goes_to_the_given_cache_dir(hub_server, tmp_path):
    push_adapter(write_adapter(tmp_path / "adapter"), REPO, token=hub_server.token, endpoint=hub_server.endpoint)

    local = download_adapter(REPO, endpoint=hub_server.endpoint, cache_dir=tmp_path / "cache")

    assert local.is_relative_to(tmp_path / "cache")


def test_download_of_a_commit_id_gets_that_version(hub_server, tmp_path):
    first = write_adapter(tmp_path / "a", seed=0)
    push_adapter(first, REPO, token=hub_server.token, endpoint=hub_server.endpoint)
    old_commit = hub_server.repos[REPO].head.oid
    push_adapter(write_adapter(tmp_path / "b", seed=1), REPO, token=hub_server.token, endpoint=hub_server.endpoint)

    local = download_adapter(REPO, revision=old_commit, endpoint=hub_server.endpoint)

    assert (local / "adapter_model.safetensors").read_bytes() == (first / "adapter_model.safetensors").read_bytes()


def test_offline_download_uses_the_cached_copy(hub_server, tmp_path, monkeypatch):
    push_adapter(write_adapter(tmp_path / "adapter"), REPO, token=hub_server.token, endpoint=hub_server.endpoint)
    online = download_adapter(REPO, endpoint=hub_server.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    assert download_adapter(REPO, endpoint=hub_server.endpoint) == online


def test_offline_download_without_a_cached_copy_says_so(hub_server, monkeypatch):
    hub_server.commit(REPO, {"adapter_config.json": b"{}"})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        download_adapter(REPO, endpoint=hub_server.endpoint)


# -- the pushed card ------------------------------------------------------------------------------


def test_pushed_card_carries_the_hub_metadata(hub_server, tmp_path):
    push_adapter(
        write_adapter(tmp_path / "adapter", card=CARD_INFO), REPO, token=hub_server.token, endpoint=hub_server.endpoint
    )

    card = ModelCard.load(download_adapter(REPO, endpoint=hub_server.endpoint) / "README.md")

    assert card.data.base_model == "prajjwal1/bert-tiny"
    assert card.data.library_name == "ptuning"
    assert {"ptuning", "p-tuning", "prompt-tuning", "text-classification", "peft"} <= set(card.data.tags)
    assert card.data.labels == ["negative", "positive"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"accuracy": 0.83, "macro_f1": 0.82}
    assert HfApi(endpoint=hub_server.endpoint).model_info(REPO).card_data.library_name == "ptuning"


def test_push_with_a_card_the_hub_rejects_is_an_adapter_error(hub_server, tmp_path):
    folder = write_adapter(tmp_path / "adapter")
    (folder / "README.md").write_text("---\ntags: [unclosed\n---\n\nA card.\n")

    with pytest.raises(AdapterError, match="README.md"):
        push_adapter(folder, REPO, token=hub_server.token, endpoint=hub_server.endpoint)


# -- refusals -------------------------------------------------------------------------------------


def test_wrong_token_is_refused_without_showing_it(hub_server, tmp_path):
    wrong = "hf_wrongWrongWrong0123456789"

    with pytest.raises(HubError, match="401") as error:
        push_adapter(write_adapter(tmp_path / "adapter"), REPO, token=wrong, endpoint=hub_server.endpoint)

    assert wrong not in str(error.value)
    assert REPO not in hub_server.repos


def test_wrong_token_on_download_is_refused_without_showing_it(hub_server):
    hub_server.commit(REPO, {"adapter_config.json": b"{}"})
    wrong = "hf_wrongWrongWrong0123456789"

    with pytest.raises(HubError, match="rejected the token") as error:
        download_adapter(REPO, token=wrong, endpoint=hub_server.endpoint)

    assert wrong not in str(error.value)


def test_read_only_token_cannot_push(hub_server, tmp_path):
    with pytest.raises(HubError, match="403") as error:
        push_adapter(write_adapter(tmp_path / "adapter"), REPO, token=hub_server.read_token, endpoint=hub_server.endpoint)

    assert hub_server.read_token not in str(error.value)


def test_push_without_a_token_says_how_to_log_in(hub_server, tmp_path):
    with pytest.raises(HubError, match="hf auth login"):
        push_adapter(write_adapter(tmp_path / "adapter"), REPO, endpoint=hub_server.endpoint)


def test_push_takes_the_token_from_hf_token(hub_server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub_server.token)

    push_adapter(write_adapter(tmp_path / "adapter"), REPO, endpoint=hub_server.endpoint)

    assert "adapter_config.json" in hub_server.repos[REPO].head.files


def test_push_of_a_folder_without_weights_is_an_adapter_error(hub_server, tmp_path):
    folder = write_adapter(tmp_path / "adapter")
    (folder / "adapter_model.safetensors").unlink()

    with pytest.raises(AdapterError, match="adapter_model.safetensors"):
        push_adapter(folder, REPO, token=hub_server.token, endpoint=hub_server.endpoint)


def test_missing_repo_is_a_hub_error(hub_server):
    with pytest.raises(HubError, match=f"repository 'test-user/nothing' not found on {hub_server.endpoint}"):
        download_adapter("test-user/nothing", endpoint=hub_server.endpoint)


def test_missing_revision_is_a_hub_error(hub_server):
    hub_server.commit(REPO, {"adapter_config.json": b"{}"})

    with pytest.raises(HubError, match="revision 'v2' not found"):
        download_adapter(REPO, revision="v2", endpoint=hub_server.endpoint)


def test_private_repo_needs_a_token_to_download(hub_server, tmp_path):
    folder = write_adapter(tmp_path / "adapter")
    push_adapter(folder, REPO, token=hub_server.token, endpoint=hub_server.endpoint, private=True)

    with pytest.raises(HubError, match="pass a token for a private repo"):
        download_adapter(REPO, endpoint=hub_server.endpoint)
    local = download_adapter(REPO, token=hub_server.token, endpoint=hub_server.endpoint)
    assert (local / "adapter_model.safetensors").read_bytes() == (folder / "adapter_model.safetensors").read_bytes()


def test_repo_without_adapter_config_is_not_an_adapter(hub_server):
    hub_server.commit(REPO, {"config.json": b"{}", "model.safetensors": b"weights"})

    with pytest.raises(AdapterError, match="not a ptuning/PEFT adapter"):
        download_adapter(REPO, endpoint=hub_server.endpoint)


def test_repo_with_pickled_adapter_weights_only_is_an_adapter_error(hub_server):
    hub_server.commit(REPO, {"adapter_config.json": b"{}", "adapter_model.bin": b"pickle"})

    with pytest.raises(AdapterError, match="safetensors"):
        download_adapter(REPO, endpoint=hub_server.endpoint)


def test_unreachable_hub_is_a_hub_error(hub_server, tmp_path):
    endpoint = closed_port_endpoint()

    with pytest.raises(HubError, match="cannot reach"):
        push_adapter(write_adapter(tmp_path / "adapter"), REPO, token=hub_server.token, endpoint=endpoint)
    with pytest.raises(HubError, match="could not be reached"):
        download_adapter(REPO, endpoint=endpoint)


def test_invalid_repo_id_is_a_hub_error(hub_server, tmp_path):
    with pytest.raises(HubError, match="not a valid repo id"):
        download_adapter("not a repo", endpoint=hub_server.endpoint)


# -- is_repo_id -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["user/sentiment-prompt", "bert-base-uncased", "org/model.v2_final"])
def test_repo_ids_are_recognised(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_repo_id(name)


@pytest.mark.parametrize("name", ["", "a/b/c", "has space/x", "user/", "../adapter", "user/double--dash", "C:\\runs"])
def test_non_ids_are_not_repo_ids(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_repo_id(name)


def test_an_existing_path_is_not_a_repo_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "adapter").mkdir(parents=True)

    assert not is_repo_id("runs/adapter")
    assert is_repo_id("runs/other")


# -- make_model_card ------------------------------------------------------------------------------


def test_card_metadata(tmp_path):
    card = make_model_card({**CARD_INFO, "license": "apache-2.0"})

    assert card.data.base_model == "prajjwal1/bert-tiny"
    assert card.data.library_name == "ptuning"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.license == "apache-2.0"
    assert card.data.labels == ["negative", "positive"]
    assert card.data.model_name == "sentiment-prompt"


def test_card_tags_peft_only_when_peft_can_load_it():
    compatible = make_model_card({**CARD_INFO, "peft_compatible": True})
    incompatible = make_model_card(
        {**CARD_INFO, "peft_compatible": False, "peft_incompatible_reason": "deep prompts have no PEFT equivalent"}
    )

    assert "peft" in compatible.data.tags
    assert "peft" not in incompatible.data.tags
    assert "PeftModel.from_pretrained" in compatible.text
    assert "PeftModel" not in incompatible.text
    assert "PEFT cannot load this adapter: deep prompts have no PEFT equivalent" in incompatible.text


def test_card_body_tells_how_to_use_it():
    text = make_model_card(CARD_INFO).text

    assert f'PromptClassifier.from_pretrained("{REPO}")' in text
    assert f"python -m ptuning predict {REPO}" in text
    assert 'from_pretrained("prajjwal1/bert-tiny", num_labels=2)' in text
    assert "| Accuracy | 0.8300 |" in text
    assert "| epochs | 5 |" in text
    assert "4 virtual tokens" in text


def test_card_names_a_later_start_layer_and_bias_offsets_only_when_used():
    plain = make_model_card(CARD_INFO).text
    late = make_model_card({**CARD_INFO, "method": "deep", "start_layer": 2, "bias_offsets": True}).text
    assert "Trained from layer" not in plain and "Bias offsets" not in plain
    assert "| Trained from layer | 2 (the prompts below it stay at their start) |" in late
    assert "| Bias offsets | trained" in late


@pytest.mark.parametrize("rank", [0, None, True, "8", -3])
def test_card_names_low_rank_updates_only_when_there_are_some(rank):
    assert "Low-rank updates" not in make_model_card({**CARD_INFO, "lora_rank": rank}).text
    card = make_model_card({**CARD_INFO, "method": "deep", "start_layer": 2, "lora_rank": 8}).text
    assert "| Low-rank updates | rank 8 (LoRA-style, per adapter, every linear layer from the start layer up) |" in card


def test_card_without_results_has_no_model_index():
    card = make_model_card({"base_model": "prajjwal1/bert-tiny"})

    assert card.data.eval_results is None
    assert "model-index" not in card.content
    assert "## Results" not in card.text


def test_regression_card_loads_peft_with_one_output():
    card = make_model_card(
        {"base_model": "prajjwal1/bert-tiny", "task": "regression", "peft_compatible": True, "metrics": {"mse": 0.1}}
    )

    assert "num_labels=1" in card.text
    assert card.data.eval_results[0].metric_type == "mse"


def test_local_base_model_stays_out_of_the_metadata():
    card = make_model_card({"base_model": "/home/me/models/minilm"})

    assert card.data.base_model is None
    assert "/home/me/models/minilm" in card.text


def test_user_text_cannot_break_the_card(tmp_path):
    hostile = "---\nlicense: stolen\n---\n# Heading\n| a | b |\n<script>x</script>\n```"
    card = make_model_card({**CARD_INFO, "labels": [hostile, "ok"], "dataset_description": hostile})
    card.save(tmp_path / "README.md")

    reloaded = ModelCard.load(tmp_path / "README.md")

    assert reloaded.data.labels == [hostile, "ok"]
    assert reloaded.data.license is None
    assert "<script>" not in reloaded.text
    assert "\n# Heading" not in reloaded.text
    assert reloaded.text.count("```") == 6  # the three usage blocks only


def test_card_metadata_says_the_task_and_method_and_reads_back(tmp_path):
    make_model_card(CARD_INFO).save(tmp_path / "README.md")

    card = ModelCard.load(tmp_path / "README.md")

    assert card.data.ptuning == {"task": "classification", "method": "p-tuning", "placement": "[P] {text}",
                                 "num_virtual_tokens": 4}  # fmt: skip
    assert read_card_data(card.data) == CardFacts(
        labels=("negative", "positive"), task="classification", base_model="prajjwal1/bert-tiny", method="p-tuning",
        metric="accuracy", metric_value=0.83,
    )  # fmt: skip


def test_an_older_card_reads_back_what_it_has():
    result = {"task": {"type": "text-classification", "name": "Text Regression"},
              "dataset": {"name": "d", "type": "custom"}, "metrics": [{"type": "mse", "value": 0.1}]}  # fmt: skip
    older = {"base_model": "prajjwal1/bert-tiny", "labels": ["a", "b"], "library_name": "ptuning",
             "model-index": [{"name": "x", "results": [result]}]}  # fmt: skip

    facts = read_card_data(older)

    assert (facts.labels, facts.task, facts.method, facts.metric, facts.metric_value) == (("a", "b"), "regression",
                                                                                         None, "mse", 0.1)  # fmt: skip


def test_card_data_of_the_wrong_types_reads_as_unknown():
    assert read_card_data({"labels": "ab", "base_model": 3, "ptuning": "deep", "model-index": "x"}) == CardFacts()
    assert read_card_data(None) == CardFacts()


def test_card_links_back_to_the_app_that_pushed_it():
    text = make_model_card({**CARD_INFO, "app_url": "https://alice-ptuning.hf.space/"}).text

    assert f"(https://alice-ptuning.hf.space/?adapter={REPO})" in text
    assert text.index("**Try it**") < text.index("With ptuning:")


def test_card_has_no_try_it_line_without_the_apps_address_or_a_repo():
    assert "Try it" not in make_model_card(CARD_INFO).text
    assert "Try it" not in make_model_card({**CARD_INFO, "repo_id": None, "app_url": "https://x.hf.space"}).text


def test_the_apps_address_is_the_setting_else_the_spaces_host():
    assert public_app_url({}) is None
    assert public_app_url({"SPACE_HOST": "alice-ptuning.hf.space"}) == "https://alice-ptuning.hf.space"
    both = {"SPACE_HOST": "alice-ptuning.hf.space", "PTUNING_PUBLIC_URL": "http://10.0.0.5:7860/ptuning/"}
    assert public_app_url(both) == "http://10.0.0.5:7860/ptuning"
    with pytest.raises(ConfigError, match="PTUNING_PUBLIC_URL='javascript:alert\\(1\\)' is not an app address"):
        public_app_url({"PTUNING_PUBLIC_URL": "javascript:alert(1)"})


def test_an_adapter_pushed_from_a_space_links_back_to_it(hub_server, tiny, make, monkeypatch):
    monkeypatch.setenv("SPACE_HOST", "alice-ptuning.hf.space")

    make(tiny("bert")).push_to_hub(REPO, token=hub_server.token, endpoint=hub_server.endpoint)

    card = hub_server.repos[REPO].head.files["README.md"].decode()
    assert f"https://alice-ptuning.hf.space/?adapter={REPO}" in card
    assert f'PromptClassifier.from_pretrained("{REPO}")' in card
