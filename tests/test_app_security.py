"""The app in front of strangers: each of the operator's policies refused in the real app, through its API.

The apps here run with their own ``AppSettings`` (strict limits, the tiny BERT allowed); SECURITY.md says what each
policy guards against.
"""

import json
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import HfApi

import app as app_module
from app import build_app
from ptuning import EMBEDDED_ID
from ptuning.adapter_files import ADAPTER_CONFIG, PTUNING_CONFIG
from ptuning.policy import AppSettings
from tests.helpers import write_csv

SMS = "SMS: spam / ham (400)"
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")


def train_settings(base_model: str, **changes) -> dict:
    """What these tests change of the Train tab's settings, by name: the endpoint fills in the rest."""
    settings = dict(base_model=base_model, method="prompt", prompt_length=2, epochs=1, batch_size=16, seed=1,
                    validation_split=0.2, patience=0)  # fmt: skip
    return {**settings, **changes}


@pytest.fixture(scope="module")
def strict(tiny):
    """Settings with small limits: the tiny BERT allowed beside the default."""
    return AppSettings(
        allowed_base_models=(EMBEDDED_ID, tiny("bert")), max_upload_bytes=4096, max_rows=50, max_text_chars=40,
        max_epochs=3, max_batch_size=16, max_train_seconds=30, max_queue=7, session_ttl_s=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def strict_url(strict, launch):
    return launch(build_app(settings=strict), strict)


@pytest.fixture
def client(strict_url):
    return Client(strict_url, verbose=False)


def messages_csv(path: Path, rows: int, text: str = "a message") -> str:
    """``rows`` labelled messages, numbered, in a CSV file (its path as a string, for ``handle_file``)."""
    return str(write_csv(path, ((f"{text} {i}", "ab"[i % 2]) for i in range(rows))))


# -- base models ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/etc", "../../models/secret", "gpt2", "meta-llama/Llama-3.1-405B"])
def test_a_base_model_the_operator_did_not_list_is_refused_with_the_list(client, strict, monkeypatch, name):
    from ptuning import backbones

    monkeypatch.setattr(backbones, "_load", lambda *a: pytest.fail(f"{a[1]} was loaded"))
    client.predict(SMS, api_name="/load_example")
    with pytest.raises(AppError) as refused:
        client.predict(**train_settings(name), api_name="/train")
    assert f"the base model '{name}' is not allowed here; this app may load only: " in str(refused.value)
    assert repr(strict.allowed_base_models[1]) in str(refused.value)


def test_a_model_directory_on_the_server_is_refused_unless_listed_exactly(client, tiny, tmp_path):
    copy = shutil.copytree(tiny("bert"), tmp_path / "bert")  # a real model, in a directory not listed
    client.predict(SMS, api_name="/load_example")
    for name in (str(copy), tiny("bert") + "/", tiny("bert") + "/."):
        with pytest.raises(AppError, match="is not allowed here"):
            client.predict(**train_settings(name), api_name="/train")


def foreign_adapter(tiny, make, folder: Path, base: str) -> Path:
    """An adapter saved on the tiny BERT whose files name ``base`` instead."""
    make(tiny("bert")).save_pretrained(folder)
    for name, path in ((ADAPTER_CONFIG, ["base_model_name_or_path"]), (PTUNING_CONFIG, ["config", "base_model"])):
        obj = json.loads((folder / name).read_text())
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = base
        (folder / name).write_text(json.dumps(obj))
    return folder


def test_an_adapter_zip_naming_another_base_is_refused_before_anything_loads(client, tiny, make, tmp_path, monkeypatch):
    from ptuning import backbones

    folder = foreign_adapter(tiny, make, tmp_path / "adapter", "someone/a-huge-model")
    archive = tmp_path / "adapter.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.iterdir():
            z.write(f, f.name)
    monkeypatch.setattr(backbones, "_load", lambda *a: pytest.fail(f"{a[1]} was loaded"))
    with pytest.raises(AppError, match="the adapter's base model 'someone/a-huge-model' is not allowed here; this app "
                                       "may load only: 'sentence-transformers/all-MiniLM-L6-v2', "):  # fmt: skip
        client.predict(handle_file(str(archive)), api_name="/load_adapter_zip")
    with pytest.raises(AppError, match="No adapter yet"):
        client.predict("hello", api_name="/classify")


def test_a_hub_adapter_naming_another_base_is_refused(hub_server, tiny, make, tmp_path, strict, launch):
    folder = foreign_adapter(tiny, make, tmp_path / "adapter", "/srv/models/private")
    HfApi(endpoint=hub_server.endpoint, token=hub_server.token).create_repo("test-user/foreign")
    HfApi(endpoint=hub_server.endpoint, token=hub_server.token).upload_folder(
        folder_path=folder, repo_id="test-user/foreign"
    )
    session = Client(launch(build_app(hub_server.endpoint, settings=strict), strict), verbose=False)
    with pytest.raises(AppError, match="the adapter's base model '/srv/models/private' is not allowed here"):
        session.predict("test-user/foreign", "", api_name="/load_adapter")


def test_a_hub_adapter_over_the_upload_limit_is_refused_before_it_downloads(hub_server, strict, launch):
    hub_server.create_repo("test-user/huge")
    hub_server.commit("test-user/huge", {ADAPTER_CONFIG: b"{}", "adapter_model.safetensors": b"\0" * 10_000})
    session = Client(launch(build_app(hub_server.endpoint, settings=strict), strict), verbose=False)
    with pytest.raises(AppError, match="take 9.8 KiB; the limit here is 4.0 KiB"):
        session.predict("test-user/huge", "", api_name="/load_adapter")
    assert not [path for _, path in hub_server.requests if path.endswith("adapter_model.safetensors")]


def test_a_hub_repo_id_is_never_read_as_a_server_directory(client, tiny, make, tmp_path):
    make(tiny("bert")).save_pretrained(tmp_path / "adapter")
    with pytest.raises(AppError, match="is not a valid repo id"):
        client.predict(str(tmp_path / "adapter"), "", api_name="/load_adapter")
    with pytest.raises(AppError, match="No adapter yet"):
        client.predict("hello", api_name="/classify")


# -- tokens ----------------------------------------------------------------------------------------------------
@pytest.fixture
def hub_app(hub_server, tiny, launch, monkeypatch):
    """``hub_app(**settings)`` → a session of an app on the test Hub, trained on the SMS example; the operator is
    logged in (HF_TOKEN is the Hub's write token)."""
    monkeypatch.setenv("HF_TOKEN", hub_server.token)

    def start(**changes) -> Client:
        settings = AppSettings(allowed_base_models=(tiny("bert"),), **changes)
        session = Client(launch(build_app(hub_server.endpoint, settings=settings), settings), verbose=False)
        session.predict(SMS, api_name="/load_example")
        session.predict(**train_settings(tiny("bert")), api_name="/train")
        return session

    return start


def writes(hub_server) -> list:
    return [r for r in hub_server.requests if r[0] == "POST"]


def test_a_push_without_a_token_never_uses_the_operators_login(hub_server, hub_app):
    session = hub_app()
    with pytest.raises(AppError, match="never pushes with its own login"):
        session.predict("test-user/sneaky", True, "", "", api_name="/push")
    assert "test-user/sneaky" not in hub_server.repos and not writes(hub_server)


def test_a_load_without_a_token_never_uses_the_operators_login(hub_server, hub_app, tiny, make, tmp_path):
    make(tiny("bert")).save_pretrained(tmp_path / "private")
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    api.create_repo("test-user/private", private=True)
    api.upload_folder(folder_path=tmp_path / "private", repo_id="test-user/private")
    session = hub_app()
    with pytest.raises(AppError, match="not found"):
        session.predict("test-user/private", "", api_name="/load_adapter")
    assert "Loaded" in session.predict("test-user/private", hub_server.token, api_name="/load_adapter")  # their own
    with pytest.raises(AppError, match="not found"):  # and the download is not left for the next one to reuse
        session.predict("test-user/private", "", api_name="/load_adapter")


def test_an_operator_who_opts_in_pushes_with_the_servers_login(hub_server, hub_app):
    session = hub_app(use_server_token=True)
    assert "Pushed to" in session.predict("test-user/mine", True, "", "", api_name="/push")
    assert "test-user/mine" in hub_server.repos


def test_a_token_appears_in_no_log_error_card_or_file(hub_server, hub_app, capfd, caplog):
    session = hub_app()
    wrong = "hf_" + uuid.uuid4().hex
    with pytest.raises(AppError) as refused:
        session.predict("test-user/sms", True, "", wrong, api_name="/push")
    session.predict("test-user/sms", True, "SMS spam.", hub_server.token, api_name="/push")
    out, err = capfd.readouterr()
    for secret in (wrong, hub_server.token):
        assert secret not in str(refused.value) and secret not in out + err + caplog.text
        for content in hub_server.repos["test-user/sms"].head.files.values():
            assert secret.encode() not in content


# -- limits ------------------------------------------------------------------------------------------------------
def test_an_upload_over_the_limit_is_refused_before_it_lands(client, strict, strict_url, tmp_path):
    import gradio.utils

    name = f"big-{uuid.uuid4().hex}.csv"
    big = messages_csv(tmp_path / name, 400)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 4096 bytes"):
        client.predict(handle_file(big), api_name="/load_file")  # the client reads the limit from the app
    with open(big, "rb") as f:  # a client that ignores it is stopped by the server, mid-upload
        answer = httpx.post(strict_url.rstrip("/") + "/gradio_api/upload", files={"files": (name, f, "text/csv")})
    assert answer.status_code == 413
    assert not list(Path(gradio.utils.get_upload_folder()).rglob(name))


def test_rows_over_the_limit_are_refused_for_training_and_for_classifying(client, tiny, tmp_path):
    many = handle_file(messages_csv(tmp_path / "many.csv", 51, "x"))
    *_, summary, problems = client.predict(many, api_name="/load_file")
    assert "many.csv has more than 50 rows; the limit here is 50" in problems
    *_, problems = client.predict("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(51)),
                                  api_name="/load_text")  # fmt: skip
    assert "more than 50 rows" in problems
    client.predict(handle_file(messages_csv(tmp_path / "ok.csv", 40, "x")), api_name="/load_file")
    client.predict(**train_settings(tiny("bert")), api_name="/train")
    with pytest.raises(AppError, match="more than 50 rows"):
        client.predict(handle_file(messages_csv(tmp_path / "texts.csv", 51, "x")), api_name="/classify_file")


def test_long_texts_are_cut_with_a_note(client):
    pasted = "text,label\n" + "".join(f"{'long ' * 20}{i},{'ab'[i % 2]}\n" for i in range(6))
    *_, summary, problems = client.predict(pasted, api_name="/load_text")
    assert "6 texts longer than 40 characters were cut there" in problems and "Ready to train" in problems


@pytest.mark.parametrize("changes, complaint", [
    (dict(epochs=4), "at most 3 epochs here, not 4"),
    (dict(batch_size=17), "batch size may be at most 16 here, not 17"),
])  # fmt: skip
def test_training_beyond_the_limits_is_refused(client, tiny, tmp_path, changes, complaint):
    client.predict(handle_file(messages_csv(tmp_path / "ok.csv", 40)), api_name="/load_file")
    with pytest.raises(AppError, match=complaint):
        client.predict(**train_settings(tiny("bert"), **changes), api_name="/train")


def test_a_run_stops_at_the_operators_time_limit(tiny, launch):
    settings = AppSettings(allowed_base_models=(tiny("bert"),), max_train_seconds=0.5, max_epochs=1000)
    session = Client(launch(build_app(settings=settings), settings), verbose=False)
    session.predict(SMS, api_name="/load_example")
    status, *_ = session.predict(**train_settings(tiny("bert"), epochs=1000), api_name="/train")
    assert status.startswith("**Stopped at this app's time limit**")


def test_a_run_stops_at_the_users_own_time_budget_below_the_operators_limit(tiny, launch):
    settings = AppSettings(allowed_base_models=(tiny("bert"),), max_train_seconds=600, max_epochs=1000)
    session = Client(launch(build_app(settings=settings), settings), verbose=False)
    session.predict(SMS, api_name="/load_example")
    status, *_ = session.predict(**train_settings(tiny("bert"), epochs=1000, time_budget_minutes=0.01),
                                 api_name="/train")  # fmt: skip
    assert status.startswith("**Stopped at your time budget**")


def test_the_queue_holds_at_most_the_operators_length(strict):
    assert build_app(settings=strict)._queue.max_size == strict.max_queue == 7


# -- sessions ------------------------------------------------------------------------------------------------------
def test_a_sessions_data_and_files_are_deleted_when_its_time_runs_out(tiny, launch, tmp_path):
    settings = AppSettings(allowed_base_models=(tiny("bert"),), session_ttl_s=3, max_train_seconds=2)
    session = Client(launch(build_app(settings=settings), settings), verbose=False)
    before = set(Path(tempfile.gettempdir()).glob("ptuning-predictions-*"))
    session.predict(SMS, api_name="/load_example")
    session.predict(**train_settings(tiny("bert")), api_name="/train")
    session.predict(handle_file(messages_csv(tmp_path / "texts.csv", 3)), api_name="/classify_file")
    made = set(Path(tempfile.gettempdir()).glob("ptuning-predictions-*")) - before
    assert len(made) == 1
    deadline = time.monotonic() + 30
    while next(iter(made)).exists():
        assert time.monotonic() < deadline, "the session's files outlived its time to live"
        time.sleep(0.2)
    with pytest.raises(AppError, match="No usable data"):
        session.predict(**train_settings(tiny("bert")), api_name="/train")
    with pytest.raises(AppError, match="No adapter yet"):
        session.predict("hello", api_name="/classify")


def test_closing_the_page_cancels_its_training(tiny, launch, monkeypatch):
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.2")  # the server notices a closed page this fast
    started, jobs = threading.Event(), []

    class Recorded(app_module.TrainingJob):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            jobs.append(self)
            started.set()

    monkeypatch.setattr(app_module, "TrainingJob", Recorded)
    settings = AppSettings(allowed_base_models=(tiny("bert"),), max_epochs=10_000)
    page = Client(launch(build_app(settings=settings), settings), verbose=False)
    page.predict(SMS, api_name="/load_example")
    page.submit(**train_settings(tiny("bert"), epochs=10_000), api_name="/train")  # hours of training
    assert started.wait(60)
    page.close()  # the heartbeat stops: the page is gone
    jobs[0].result(timeout=60)  # raises TimeoutError if the run went on
    assert jobs[0]._cancel.is_set()
