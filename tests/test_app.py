"""The app, scripted through its API with gradio_client: what a user (or a script) gets back from each tab.

Training uses a tiny random BERT, so numbers mean nothing; the tests check what is shown, not how good it is.
"""

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app import build_app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMS = "SMS: spam / ham (400)"
# Gradio's own use of pandas 3 (in its queue), not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")


@pytest.fixture
def client(url):
    """A new browser session: nothing loaded, nothing trained."""
    return Client(url, verbose=False)


def train_settings(base_model: str, **changes) -> dict:
    """What these tests change of the Train tab's settings, by name: the endpoint fills in the rest."""
    settings = dict(base_model=base_model, method="prompt", prompt_length=4, epochs=2, validation_split=0.2, patience=5)
    return {**settings, **changes}


@pytest.fixture(scope="module")
def trained(url, tiny):
    """A session that loaded the SMS example and trained on it, with what /train returned."""
    session = Client(url, verbose=False)
    session.predict(SMS, api_name="/load_example")
    outputs = session.predict(**train_settings(tiny("bert")), api_name="/train")
    return session, outputs


def test_example_data_shows_columns_and_class_counts(client):
    preview, text_col, label_col, distribution, summary, problems = client.predict(SMS, api_name="/load_example")
    assert (text_col["value"], label_col["value"]) == ("text", "label")
    assert distribution["value"]["data"] == [["ham", 280], ["spam", 120]]
    assert "400 examples" in summary and "2 classes" in summary
    assert "Ready to train" in problems
    assert len(preview["value"]["data"]) == 50


def test_file_problems_are_listed_with_row_numbers(client, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,pos\n,neg\nawful,\nfine,pos\nbad,neg\n", encoding="utf-8")
    *_, summary, problems = client.predict(handle_file(str(bad)), api_name="/load_file")
    assert "Cannot train on this data" in problems
    assert "empty text in column 'text' at row 2" in problems
    assert "missing label in column 'label' at row 3" in problems
    assert "Traceback" not in problems
    assert "5 rows" in summary


def test_duplicates_are_shown_as_warnings(client):
    *_, problems = client.predict("text,label\ngreat,pos\ngreat,pos\nawful,neg\nbad,neg\n", api_name="/load_text")
    assert "duplicate row (row 2)" in problems
    assert "Ready to train" in problems


def test_binary_file_is_a_readable_message(client, tmp_path):
    blob = tmp_path / "data.csv"
    blob.write_bytes(b"\x00\x01\x02 not a table")
    *_, summary, problems = client.predict(handle_file(str(blob)), api_name="/load_file")
    assert "binary file" in problems
    assert "No data yet" in summary


def test_classify_before_training_is_a_readable_error(client):
    with pytest.raises(AppError, match="No adapter yet: train one on the Train tab"):
        client.predict("a gripping film", api_name="/classify")


def test_train_without_data_is_a_readable_error(client, tiny):
    with pytest.raises(AppError, match="No usable data: load a table on the Data tab"):
        client.predict(**train_settings(tiny("bert")), api_name="/train")


def test_bad_placement_is_a_readable_error(client, tiny):
    client.predict(SMS, api_name="/load_example")
    with pytest.raises(AppError, match="placement|template"):
        client.predict(**train_settings(tiny("bert"), placement="[P:x] {text"), api_name="/train")


def test_starting_from_the_loaded_adapter_needs_one(client, tiny):
    client.predict(SMS, api_name="/load_example")
    with pytest.raises(AppError, match="No adapter to start from"):
        client.predict(**train_settings(tiny("bert"), start_from_loaded=True), api_name="/train")


def test_a_new_adapter_starts_from_the_loaded_ones_prompt(url, tiny):
    session = Client(url, verbose=False)
    session.predict(SMS, api_name="/load_example")
    session.predict(**train_settings(tiny("bert"), epochs=1), api_name="/train")  # the loaded adapter: 4 vectors
    status, *_, download, _ = session.predict(
        **train_settings(tiny("bert"), epochs=1, prompt_length=2, start_from_loaded=True), api_name="/train"
    )  # fmt: skip
    assert status.startswith("**Done**")
    saved = json.loads(zipfile.ZipFile(download["value"]).read("ptuning_config.json"))
    assert saved["config"]["num_virtual_tokens"] == 4  # the prompt's settings are the loaded adapter's


def test_training_shows_metrics_confusion_matrix_and_adapter_zip(trained):
    _, (status, losses, validation, metrics, confusion, download, trials) = trained
    assert not (trials or {}).get("data") and not (trials or {}).get("value")  # no search: no trial table
    assert status.startswith("**Done** after")
    assert "accuracy **" in metrics and "macro F1 **" in metrics and "| spam |" in metrics
    assert "Confusion matrix" in confusion and ">ham</th>" in confusion
    assert losses["columns"] == ["step", "loss"] and len(losses["data"]) == 20  # 2 epochs of 320 / 32 steps
    assert {row[2] for row in validation["value"]["data"]} == {"loss", "accuracy"}
    with zipfile.ZipFile(download["value"]) as archive:
        assert {"adapter_config.json", "adapter_model.safetensors", "ptuning_config.json"} <= set(archive.namelist())


def test_a_search_shows_its_trials_and_keeps_the_best_adapter(url, tiny):
    session = Client(url, verbose=False)
    session.predict(SMS, api_name="/load_example")
    status, *_, download, trials = session.predict(
        **train_settings(tiny("bert"), epochs=1, search_settings=True, search_trials=2), api_name="/train"
    )
    assert status.startswith("**Search done:** 2 trials. Best: trial ")
    table = trials["value"]
    assert trials["visible"] and [row[0] for row in table["data"]] == [0, 1] and "accuracy" in table["headers"]
    with zipfile.ZipFile(download["value"]) as archive:
        assert "adapter_model.safetensors" in archive.namelist()
    with pytest.raises(AppError, match="greater than maximum value 20"):  # the widget's own bound
        session.predict(**train_settings(tiny("bert"), search_settings=True, search_trials=50), api_name="/train")


def test_a_search_beyond_the_operators_trials_is_refused_in_one_line(app_settings):
    import dataclasses as dc

    import gradio as gr

    from app import search_size

    assert search_size(False, 50, app_settings) == 0 and search_size(True, 3, app_settings) == 3
    with pytest.raises(gr.Error, match="1 to 20 trials here, not 50"):
        search_size(True, 50, app_settings)
    with pytest.raises(gr.Error, match="does not run settings searches"):
        search_size(True, 3, dc.replace(app_settings, max_search_trials=0))


def test_classify_returns_label_confidences(trained):
    session, _ = trained
    result = session.predict("WINNER! Claim your free prize now", api_name="/classify")
    assert result["label"] in ("ham", "spam")
    assert {c["label"] for c in result["confidences"]} == {"ham", "spam"}
    assert sum(c["confidence"] for c in result["confidences"]) == pytest.approx(1.0)


def test_classify_file_returns_csv_with_predictions(trained, tmp_path):
    session, _ = trained
    texts = tmp_path / "texts.csv"
    messages = ["see you at 8", "FREE entry! Text WIN now"]
    texts.write_text("message\n" + "".join(m + "\n" for m in messages), encoding="utf-8")
    csv = Path(session.predict(handle_file(str(texts)), api_name="/classify_file")).read_text(encoding="utf-8")
    header, *rows = csv.splitlines()
    assert header == "message,predicted_label,confidence"
    assert len(rows) == 2 and all(row.split(",")[1] in ("ham", "spam") for row in rows)
    one_by_one = [session.predict(m, api_name="/classify")["label"] for m in messages]
    assert [row.split(",")[1] for row in rows] == one_by_one  # the same labels as classifying each text alone


def test_downloaded_adapter_zip_loads_in_a_new_session(trained, client):
    _, (*_, download, _trials) = trained
    message = client.predict(handle_file(download["value"]), api_name="/load_adapter_zip")
    assert "Loaded" in message
    loaded = client.predict("hello there", api_name="/classify")
    assert loaded["label"] in ("ham", "spam")
    assert {c["label"] for c in loaded["confidences"]} == {"ham", "spam"}
    assert loaded == trained[0].predict("hello there", api_name="/classify")  # the very adapter that was trained


def test_adapter_zip_with_path_traversal_is_refused(client, tmp_path):
    hostile = tmp_path / "adapter.zip"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("adapter_config.json", "{}")
        archive.writestr("../../adapter_model.safetensors", b"x")
    with pytest.raises(AppError, match="unsafe path"):
        client.predict(handle_file(str(hostile)), api_name="/load_adapter_zip")
    with pytest.raises(AppError, match="No adapter yet"):
        client.predict("hello", api_name="/classify")


def test_upload_that_is_not_a_zip_is_refused(client, tmp_path):
    fake = tmp_path / "adapter.zip"
    fake.write_text("hello", encoding="utf-8")
    with pytest.raises(AppError, match="not a zip archive"):
        client.predict(handle_file(str(fake)), api_name="/load_adapter_zip")


def test_api_lists_the_named_endpoints_only(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == {"/load_file", "/load_example", "/load_text", "/train", "/classify", "/classify_file",
                     "/load_adapter", "/load_adapter_zip", "/push", "/estimate", "/search_adapters"}  # fmt: skip


def test_push_then_load_from_the_hub_never_shows_the_token(hub_server, tiny, app_settings):
    app = build_app(hub_endpoint=hub_server.endpoint, settings=app_settings)
    _, local_url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        session = Client(local_url, verbose=False)
        session.predict(SMS, api_name="/load_example")
        session.predict(**train_settings(tiny("bert"), epochs=1), api_name="/train")
        with pytest.raises(AppError) as refused:
            session.predict("test-user/sms", True, "", "hf_not_a_real_token_123", api_name="/push")
        assert "hf_not_a_real_token_123" not in str(refused.value)

        link = session.predict("test-user/sms", True, "SMS spam, 400 messages.", hub_server.token, api_name="/push")
        assert "Pushed to" in link and "test-user/sms" in link and hub_server.token not in link
        card = hub_server.repos["test-user/sms"].head.files["README.md"].decode()
        assert "SMS spam, 400 messages." in card

        fresh = Client(local_url, verbose=False)
        message = fresh.predict("test-user/sms", hub_server.token, api_name="/load_adapter")
        assert "Loaded" in message
        loaded = fresh.predict("see you soon", api_name="/classify")
        assert loaded["label"] in ("ham", "spam")
        assert loaded == session.predict("see you soon", api_name="/classify")  # the adapter that was pushed
    finally:
        app.close()


def test_train_settings_start_at_the_library_defaults(client):
    from ptuning.config import PromptConfig
    from ptuning.train import TrainingArguments

    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/train"]["parameters"]
    shown = {p["parameter_name"]: p["parameter_default"] for p in params}
    config, args = PromptConfig(labels=["a", "b"]), TrainingArguments()
    assert shown["method"] == config.method.value and shown["pooling"] == config.pooling.value
    assert shown["prompt_length"] == config.num_virtual_tokens and shown["placement"] == config.placement
    assert shown["encoder_type"] == config.encoder_type.value
    assert (shown["batch_size"], shown["seed"], shown["patience"]) == (args.batch_size, args.seed, args.patience)
    assert shown["validation_split"] == args.val_split


def test_a_training_update_names_its_outputs_or_fails():
    from app import TrainView

    assert len(TrainView.update(status="x")) == len(dataclasses.fields(TrainView))
    with pytest.raises(TypeError, match="stauts"):
        TrainView.update(stauts="a typo")


def test_classify_goes_through_the_shared_engine_batching_users_together(tiny):
    from ptuning import PromptClassifier
    from ptuning.serving.pool import EnginePool

    from app import classify, classify_file  # noqa: F401  (the handlers the Classify tab wires)

    import threading

    model = PromptClassifier(tiny("bert"), labels=["ham", "spam"])
    other = PromptClassifier(tiny("bert"), labels=["no", "yes"], num_virtual_tokens=3)  # another user's adapter
    engines = EnginePool()
    texts = [f"free prize number {i} now" for i in range(8)]
    answers: dict = {}
    go = threading.Barrier(len(texts))

    def user(i: int) -> None:  # eight users at once, half with each adapter
        mine = model if i % 2 == 0 else other
        go.wait()
        answers[i] = (mine, classify(texts[i], mine, engines))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (mine, scores) in answers.items():
        assert scores == pytest.approx(mine.predict([texts[i]])[0]["scores"], abs=1e-5)
    registry = engines.engine_for(model).metrics.registry
    assert engines.engine_for(other) is engines.engine_for(model)  # one engine for the base both share
    assert registry.get_sample_value("ptuning_texts_total") == len(texts)
    assert registry.get_sample_value("ptuning_batch_size_count") < len(texts)  # some users shared a pass
    engines.close()


def test_the_train_tab_shows_the_estimate_before_training_and_the_time_limit(tiny, sentiment, app_settings):
    import dataclasses as dc

    from app import TrainForm, estimate_text

    settings = train_settings(tiny("bert"), epochs=0)
    shown = estimate_text(sentiment(64), TrainForm(**settings), settings=app_settings)
    assert shown.startswith("**Estimate:** about ") and "steps" in shown
    limited = dc.replace(app_settings, max_train_seconds=30)
    assert "stops at 30 s" in estimate_text(sentiment(64), TrainForm(**settings), settings=limited)
    # the user's own budget, in minutes: it applies below the operator's limit, the limit above it
    quarter, five = TrainForm(**settings, time_budget_minutes=0.25), TrainForm(**settings, time_budget_minutes=5)
    assert "stops at 15 s" in estimate_text(sentiment(64), quarter, settings=limited)
    assert "stops at 30 s" in estimate_text(sentiment(64), five, settings=limited)
    assert estimate_text(None, TrainForm(**settings), settings=app_settings) == ""  # no data yet: nothing to estimate
    elsewhere = TrainForm(**{**settings, "base_model": "/etc"})
    assert estimate_text(sentiment(64), elsewhere, settings=app_settings) == ""


def test_the_low_rank_field_is_automatic_when_empty_and_a_rank_when_given(tiny):
    from app import TrainForm

    assert TrainForm().config(tiny("bert"))["lora_rank"] is None  # train() chooses from the data
    assert TrainForm(lora_rank="").config(tiny("bert"))["lora_rank"] is None
    assert TrainForm(lora_rank=0).config(tiny("bert"))["lora_rank"] == 0
    assert TrainForm(lora_rank=8).config(tiny("bert"))["lora_rank"] == 8


def test_every_train_setting_is_a_named_parameter_with_the_widgets_default(url):
    from app import FORM_FIELDS, TrainForm

    info = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    for endpoint in ("/train", "/estimate"):
        parameters = info["named_endpoints"][endpoint]["parameters"]
        assert [p["parameter_name"] for p in parameters] == FORM_FIELDS  # the order the widgets pass them in
        assert all(p["parameter_has_default"] for p in parameters)
        defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters}
        form = TrainForm()
        assert {k: v for k, v in defaults.items() if k != "base_model"} == {
            k: getattr(form, k) for k in FORM_FIELDS if k != "base_model"}


def test_the_adapter_description_carries_the_reading_of_its_prompt(tiny):
    from ptuning import PromptClassifier

    from app import describe_adapter

    shown = describe_adapter(PromptClassifier(tiny("bert"), labels=["ham", "spam"], num_virtual_tokens=3))
    assert shown.startswith("**Adapter ready:**") and "What the prompt reads as" in shown
    bare = describe_adapter(PromptClassifier(tiny("bert"), labels=["a", "b"], num_virtual_tokens=0))
    assert bare.startswith("**Adapter ready:**") and "What the prompt reads as" not in bare  # nothing to read
    updated = describe_adapter(PromptClassifier(tiny("bert"), labels=["a", "b"], lora_rank=4, bias_offsets=True))
    assert ", bias offsets, rank-4 updates · base" in updated and ", rank" not in shown
