"""Many users at once: sessions in parallel threads, each with its own data, labels and adapters, through the API.

Every request must succeed, and every session must see only what it made: its table, its label names, its
adapter (trained, or loaded back from its own zip), its predictions. Three trainings run at once, and each must
give the adapter its seed gives alone.
"""

import csv
import dataclasses
import random
import threading
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from app import TrainForm, build_app
from ptuning.data import load_dataset
from ptuning.train import TrainingArguments, train

SESSIONS = 6
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")


def own_data(folder: Path, i: int) -> tuple[Path, set[str]]:
    """A table of session ``i``: its own label names, decided by one word in each text."""
    labels = (f"s{i}-yes", f"s{i}-no")
    rng = random.Random(i)
    rows = []
    for k in range(32):
        word = rng.choice(["great", "fine", "lovely"] if k % 2 else ["awful", "dull", "poor"])
        rows.append((" ".join(rng.sample(["the", "film", "was", "a", "plot", "scene"], 3) + [word]), labels[k % 2]))
    path = folder / f"session-{i}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path, set(labels)


def one_user(url: str, tiny_bert: str, folder: Path, i: int) -> dict:
    """The whole visit of user ``i``; an assertion or a failed request raises. Returns what it classified."""
    session = Client(url, verbose=False)
    data, labels = own_data(folder, i)
    *_, distribution, summary, problems = session.predict(handle_file(str(data)), api_name="/load_file")
    assert {row[0] for row in distribution["value"]["data"]} == labels and "Ready to train" in problems

    settings = dict(base_model=tiny_bert, method="prompt", prompt_length=2, placement="start", epochs=1,
                    learning_rate="", batch_size=8, seed=i, validation_split=0.25, pooling="mean",
                    encoder_type="MLP", init_text="", patience=0)  # fmt: skip
    status, *_, metrics, confusion, download, _trials = session.predict(**settings, api_name="/train")
    assert status.startswith("**Done**")
    assert all(f">{name}</th>" in confusion for name in labels)

    text = "the plot was great"
    first = session.predict(text, api_name="/classify")
    assert {c["label"] for c in first["confidences"]} == labels

    texts = folder / f"texts-{i}.csv"
    texts.write_text("text\nthe film was dull\na lovely scene\n", encoding="utf-8")
    out = Path(session.predict(handle_file(str(texts)), api_name="/classify_file")).read_text(encoding="utf-8")
    predicted = [row["predicted_label"] for row in csv.DictReader(out.splitlines())]
    assert len(predicted) == 2 and set(predicted) <= labels

    with zipfile.ZipFile(download["value"]) as archive:
        assert f"s{i}-yes" in archive.read("ptuning_config.json").decode()
    assert "Loaded" in session.predict(handle_file(download["value"]), api_name="/load_adapter_zip")
    assert session.predict(text, api_name="/classify") == first  # its own adapter, back from its own zip
    return {c["label"]: c["confidence"] for c in first["confidences"]}


def trained_alone(tiny_bert: str, folder: Path, i: int) -> dict:
    """What session ``i``'s adapter says of the text when the same run is made alone, here."""
    config = TrainForm(method="prompt", prompt_length=2).config(tiny_bert)  # what the sessions' Train tab sends
    args = TrainingArguments(epochs=1, batch_size=8, seed=i, val_split=0.25, patience=0, time_budget=600)
    model = train(load_dataset(own_data(folder, i)[0]), config=config, args=args).model
    return model.predict(["the plot was great"])[0]["scores"]


@pytest.fixture(scope="module")
def busy_url(app_settings, launch):
    """The app with three training slots, so that runs overlap."""
    settings = dataclasses.replace(app_settings, train_concurrency=3)
    return launch(build_app(settings=settings), settings)


def test_six_users_at_once_each_see_only_their_own_data_labels_and_adapters(busy_url, tiny, tmp_path):
    errors: list[BaseException] = []
    seen: dict[int, dict] = {}

    def visit(i):
        try:
            seen[i] = one_user(busy_url, tiny("bert"), tmp_path, i)
        except BaseException as error:  # reported below, with the session it happened in
            errors.append(AssertionError(f"session {i}: {error!r}"))

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not any(t.is_alive() for t in threads), "a session never finished"
    assert not errors, errors
    for i in range(SESSIONS):  # trained at once with others, as it trains alone
        alone = trained_alone(tiny("bert"), tmp_path, i)
        assert seen[i] == pytest.approx(alone, abs=1e-4), f"session {i}"
