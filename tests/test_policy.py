"""The operator's settings (ptuning.policy): read from the environment, and the checks every request goes through."""

import dataclasses
import re
from pathlib import Path

import pytest

from ptuning import EMBEDDED_ID
from ptuning.errors import ConfigError
from ptuning.options import field_help
from ptuning.policy import AppSettings, env_name
from ptuning.train import TrainingArguments


def test_defaults_allow_the_embedded_model_only_and_never_the_servers_token():
    settings = AppSettings()
    assert settings.allowed_base_models == (EMBEDDED_ID,)
    assert settings.use_server_token is False
    assert settings.check_base_model("") == settings.check_base_model(EMBEDDED_ID) == EMBEDDED_ID


def test_every_setting_is_read_from_its_environment_variable():
    environ = {
        "PTUNING_ALLOWED_BASE_MODELS": " a/b , /srv/models/c ,, ", "PTUNING_USE_SERVER_TOKEN": "yes",
        "PTUNING_MAX_UPLOAD_BYTES": "1000", "PTUNING_MAX_ROWS": "10", "PTUNING_MAX_TEXT_CHARS": "50",
        "PTUNING_MAX_EPOCHS": "3", "PTUNING_MAX_BATCH_SIZE": "8", "PTUNING_MAX_SEARCH_TRIALS": "5",
        "PTUNING_MAX_TRAIN_SECONDS": "2.5",
        "PTUNING_MAX_QUEUE": "4", "PTUNING_SESSION_TTL_S": "60", "PTUNING_TRAIN_CONCURRENCY": "2",
        "PTUNING_PREDICT_CONCURRENCY": "3", "PTUNING_TRAIN_GPU_SECONDS": "30",
    }  # fmt: skip
    settings = AppSettings.from_env(environ)
    assert settings == AppSettings(
        allowed_base_models=("a/b", "/srv/models/c"), use_server_token=True, max_upload_bytes=1000, max_rows=10,
        max_text_chars=50, max_epochs=3, max_batch_size=8, max_search_trials=5, max_train_seconds=2.5, max_queue=4, session_ttl_s=60,
        train_concurrency=2, predict_concurrency=3, train_gpu_seconds=30,
    )  # fmt: skip
    assert set(environ) == {env_name(f.name) for f in dataclasses.fields(AppSettings)}


BAD = [("PTUNING_MAX_ROWS", "many"), ("PTUNING_USE_SERVER_TOKEN", "maybe"), ("PTUNING_MAX_EPOCHS", "0"),
       ("PTUNING_ALLOWED_BASE_MODELS", " , ")]  # fmt: skip


@pytest.mark.parametrize("name, value", BAD)
def test_a_bad_setting_is_one_line_naming_it(name, value):
    with pytest.raises(ConfigError) as refused:
        AppSettings.from_env({name: value})
    assert len(str(refused.value).splitlines()) == 1
    assert name in str(refused.value) or name.removeprefix("PTUNING_").lower() in str(refused.value)


def test_a_session_must_outlive_its_longest_training():
    with pytest.raises(ConfigError, match="session_ttl_s must exceed max_train_seconds"):
        AppSettings(max_train_seconds=600, session_ttl_s=300)


def test_a_base_model_not_listed_is_refused_with_the_list(tmp_path):
    settings = AppSettings(allowed_base_models=(EMBEDDED_ID, "/srv/models/tiny"))
    for name in ("/etc", str(tmp_path), "gpt2", "/srv/models/tiny/", "../tiny"):
        with pytest.raises(ConfigError) as refused:
            settings.check_base_model(name)
        assert "may load only: 'sentence-transformers/all-MiniLM-L6-v2', '/srv/models/tiny'" in str(refused.value)
    assert settings.check_base_model(" /srv/models/tiny ") == "/srv/models/tiny"


def test_a_request_without_a_token_gets_none_unless_the_operator_opted_in():
    assert AppSettings().hub_token("  ") is False  # huggingface_hub: send no token at all
    assert AppSettings().hub_token(" hf_user ") == "hf_user"
    assert AppSettings(use_server_token=True).hub_token("") is None  # huggingface_hub: find the login


def test_training_beyond_the_limits_is_refused_and_the_rest_is_capped():
    settings = AppSettings(max_epochs=4, max_batch_size=16, max_train_seconds=30)
    with pytest.raises(ConfigError, match="at most 4 epochs"):
        settings.limit_training(TrainingArguments(epochs=5), 100)
    with pytest.raises(ConfigError, match="batch size may be at most 16"):
        settings.limit_training(TrainingArguments(batch_size=17), 100)
    limited = settings.limit_training(TrainingArguments(batch_size=8, time_budget=60), 100)
    assert limited.epochs == 4 and limited.time_budget == 30  # automatic would choose 20
    assert settings.limit_training(TrainingArguments(epochs=2, batch_size=8, time_budget=10), 100).time_budget == 10
    assert AppSettings().limit_training(TrainingArguments(), 100).epochs is None  # automatic stays automatic


def test_every_setting_has_help_and_a_row_in_the_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for f in dataclasses.fields(AppSettings):
        assert field_help(AppSettings, f.name)
        assert re.search(rf"^\| `{env_name(f.name)}` \|", readme, re.M), f"README has no row for {env_name(f.name)}"
