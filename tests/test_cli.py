"""The command line (ptuning.cli): train -> evaluate -> predict -> push, and one-line errors for bad input.

Commands run in-process through ``cli.main``; two tests start ``python -m ptuning`` for real.
"""

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ptuning.train
from ptuning import cli
from tests.helpers import write_csv
from tests.test_hub_search import publish

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--epochs", "3", "--batch-size", "16", "--lr", "0.1", "--head-lr", "0.05", "--prompt-length", "4", "--quiet"]


@pytest.fixture(scope="session")
def sentiment_csv(sentiment):
    """``sentiment_csv(path, n, seed)`` → the synthetic sentiment data (the ``sentiment`` fixture) as a CSV file."""

    def write(path: Path, n: int = 64, seed: int = 0) -> Path:
        data = sentiment(n, seed=seed)
        return write_csv(path, zip(data.texts, [data.label_names[y] for y in data.labels]))

    return write


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory, sentiment_csv):
    """An adapter trained by the CLI on the synthetic sentiment data, and its files."""
    tmp = tmp_path_factory.mktemp("cli")
    data = sentiment_csv(tmp / "train.csv")
    code = cli.main(["train", str(data), "--out", str(tmp / "adapter"), "--model", tiny("bert"), *FAST])
    assert code == 0
    return {"adapter": tmp / "adapter", "data": data, "test": sentiment_csv(tmp / "test.csv", n=20, seed=1)}


# -- the round trip ---------------------------------------------------------------------------------------


def test_train_prints_the_metrics_as_its_last_line(tiny, tmp_path, capsys, sentiment_csv):
    data = sentiment_csv(tmp_path / "train.csv")
    code, out, err = run(capsys, "train", data, "--out", tmp_path / "a", "--model", tiny("bert"), *FAST)

    assert code == 0
    metrics = last_json(out)
    assert set(metrics) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n_examples"}
    assert f"adapter saved to {tmp_path / 'a'} (deep, 4 virtual tokens, placement start, rank-4 updates)" in out
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "a" / "checkpoint" / "trainer_state.json").is_file()


def test_train_reports_data_warnings(tiny, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", zip(["good film", "good film", "bad film", "awful", "great", "poor"], "ppnnpn"))
    code, out, err = run(capsys, "train", data, "--out", tmp_path / "a", "--model", tiny("bert"), *FAST)
    assert code == 0
    assert "warning: 1 duplicate row" in err


def test_evaluate_prints_the_metrics_as_its_last_line(trained, capsys):
    code, out, err = run(capsys, "evaluate", trained["adapter"], trained["test"])

    assert code == 0
    metrics = last_json(out)
    assert metrics["n_examples"] == 20
    assert set(metrics) == {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n_examples"}
    assert set(metrics["per_class"]) == {"neg", "pos"}


def test_predict_prints_a_table(trained, capsys):
    code, out, err = run(capsys, "predict", trained["adapter"], "a good movie", "a bad plot")
    lines = out.strip().splitlines()
    assert code == 0
    assert lines[0].split() == ["label", "score", "text"]
    assert lines[1].endswith("a good movie") and lines[1].split()[0] in ("neg", "pos")


def test_predict_json_prints_one_object_per_line(trained, capsys):
    code, out, err = run(capsys, "predict", trained["adapter"], "a good movie", "a bad plot", "--json")
    rows = [json.loads(line) for line in out.strip().splitlines()]

    assert code == 0
    assert [r["text"] for r in rows] == ["a good movie", "a bad plot"]
    for r in rows:
        assert set(r) == {"text", "label", "score", "scores"}
        assert set(r["scores"]) == {"neg", "pos"} and r["score"] == r["scores"][r["label"]]


def test_predict_reads_a_file_and_writes_csv(trained, tmp_path, capsys):
    out_file = tmp_path / "pred.csv"
    code, out, err = run(capsys, "predict", trained["adapter"], "--input", trained["test"], "--output", out_file)

    with out_file.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert code == 0 and "wrote 20 predictions" in out
    assert list(rows[0]) == ["text", "label", "score", "score_neg", "score_pos"]
    assert len(rows) == 20 and rows[0]["label"] in ("neg", "pos")


def test_predict_writes_jsonl(trained, tmp_path, capsys):
    out_file = tmp_path / "pred.jsonl"
    code, out, err = run(capsys, "predict", trained["adapter"], "fine", "dull", "--output", out_file)
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["fine", "dull"]


def test_inspect_prints_the_nearest_tokens_of_each_vector(trained, capsys):
    code, out, err = run(capsys, "inspect", trained["adapter"], "--top", "3")
    lines = out.strip().splitlines()

    assert code == 0
    assert lines[0].split() == ["vector", "nearest", "tokens", "(cosine)"]
    assert [line.split()[0] for line in lines[1:5]] == ["0", "1", "2", "3"]  # --prompt-length 4
    assert [float(c) <= 1.0 for c in lines[1].split()[-5::2]] == [True] * 3  # 3 tokens, each then its cosine
    assert lines[5].startswith("note: Only the input vectors are read")  # the default method is deep


def test_inspect_json_has_every_vector_with_k_tokens(trained, capsys):
    code, out, err = run(capsys, "inspect", trained["adapter"], "--top", "2", "--json")
    reading = json.loads(out)

    assert code == 0
    assert set(reading) == {"far_cosine", "vectors", "note"}
    assert [v["index"] for v in reading["vectors"]] == [0, 1, 2, 3]
    for v in reading["vectors"]:
        assert set(v) == {"index", "nearest", "far"} and isinstance(v["far"], bool)
        assert len(v["nearest"]) == 2 and all(set(n) == {"token", "cosine"} for n in v["nearest"])


def test_train_search_prints_every_trial_then_the_metrics(tiny, tmp_path, capsys, sentiment_csv):
    data = sentiment_csv(tmp_path / "train.csv", n=48)
    fast = ["--epochs", "2", "--batch-size", "16", "--quiet"]
    code, out, err = run(capsys, "train", data, "--out", tmp_path / "a", "--model", tiny("bert"), "--search", 3, *fast)
    lines = out.strip().splitlines()

    assert code == 0
    assert lines[0].split()[:3] == ["trial", "state", "method"] and "accuracy" in lines[0].split()
    assert [line.split()[0] for line in lines[1:4]] == ["0", "1", "2"]
    assert lines[4].startswith("best: trial ") and "adapter saved to" in lines[5]
    assert set(last_json(out)) >= {"accuracy", "n_examples"}
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("trial ")] == [
        "trial 0", "trial 1", "trial 2"
    ]
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()


def test_regression_evaluates_with_correlations(tiny, tmp_path, capsys):
    texts = [f"{'good ' * (i % 4)}movie {i}" for i in range(48)]
    targets = [0.5 * (i % 4) + 0.01 * i for i in range(48)]  # many distinct numbers: read as regression
    data = write_csv(tmp_path / "r.csv", zip(texts, targets))
    code, out, err = run(capsys, "train", data, "--out", tmp_path / "a", "--model", tiny("bert"), *FAST)
    assert code == 0 and set(last_json(out)) == {"pearson", "spearman", "mse", "mae", "n_examples"}

    code, out, err = run(capsys, "evaluate", tmp_path / "a", data)
    assert code == 0 and last_json(out)["n_examples"] == 48
    code, out, err = run(capsys, "predict", tmp_path / "a", "good good movie", "--json")
    assert json.loads(out)["label"] is None and isinstance(json.loads(out)["score"], float)


def test_peft_compatible_makes_an_adapter_peft_can_load(tiny, tmp_path, capsys, sentiment_csv):
    data = sentiment_csv(tmp_path / "train.csv", n=32)
    code, out, err = run(
        capsys, "train", data, "--out", tmp_path / "a", "--model", tiny("bert"), "--peft-compatible", *FAST
    )
    saved = json.loads((tmp_path / "a" / "ptuning_config.json").read_text())
    assert code == 0
    assert saved["peft_compatible"] is True
    assert saved["config"]["placement"] == "start" and saved["config"]["pooling"] == "model"


def test_ctrl_c_stops_training_and_resume_finishes_it(tiny, tmp_path, capsys, monkeypatch, sentiment_csv):
    class InterruptAtStep2(ptuning.train.Callback):
        def on_step_end(self, state):
            if state.step == 2:
                signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(ptuning.train, "TqdmCallback", InterruptAtStep2)
    data = sentiment_csv(tmp_path / "train.csv", n=48)
    argv = ["train", data, "--out", tmp_path / "a", "--model", tiny("bert"), *[a for a in FAST if a != "--quiet"]]

    code, out, err = run(capsys, *argv)
    assert code == 130
    assert "stopped at step 2 of 9" in err and "--resume" in err
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()

    monkeypatch.setattr(ptuning.train, "TqdmCallback", ptuning.train.Callback)
    code, out, err = run(capsys, *argv, "--resume")
    assert code == 0
    saved = json.loads((tmp_path / "a" / "ptuning_config.json").read_text())["info"]["training"]
    assert saved["steps"] == 9 and saved["cancelled"] is False


def test_push_uploads_and_the_hub_copy_predicts(trained, hub_server, capsys):  # noqa: F811
    repo = "test-user/cli-prompt"
    code, out, err = run(
        capsys, "push", trained["adapter"], repo, "--token", hub_server.token, "--endpoint", hub_server.endpoint
    )
    assert code == 0
    assert out.strip() == f"{hub_server.endpoint}/{repo}"
    assert hub_server.token not in out + err

    code, out, err = run(capsys, "predict", repo, "a good movie", "--json", "--endpoint", hub_server.endpoint)
    assert code == 0 and json.loads(out)["label"] in ("neg", "pos")


@pytest.fixture
def published(hub_server):
    """Two public adapters and a private one on the test Hub."""
    publish(hub_server, "test-user/movie-sentiment", downloads=7, likes=1, labels=["neg", "pos"], method="deep",
            metrics={"accuracy": 0.8125})  # fmt: skip
    publish(hub_server, "test-user/sms-spam", downloads=3, likes=9, labels=["ham", "spam"], method="prompt")
    publish(hub_server, "test-user/secret-sentiment", private=True, labels=["a", "b"])
    return hub_server


def test_hub_search_prints_a_table_of_what_the_cards_say(published, capsys):
    code, out, err = run(capsys, "hub", "search", "sentiment", "--endpoint", published.endpoint)

    header, *rows = out.splitlines()
    assert code == 0 and err == ""
    assert header.split() == ["repo", "task", "labels", "base", "model", "method", "metric", "downloads", "likes",
                              "updated"]  # fmt: skip
    assert len(rows) == 1 and rows[0].split()[:5] == ["test-user/movie-sentiment", "classification", "neg,", "pos",
                                                       "prajjwal1/bert-tiny"]  # fmt: skip
    assert "accuracy 0.8125" in rows[0]


def test_hub_search_json_is_one_row_a_line_in_the_order_asked(published, capsys):
    code, out, _ = run(capsys, "hub", "search", "--sort", "likes", "--json", "--endpoint", published.endpoint)

    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["repo_id"] for r in rows] == ["test-user/sms-spam", "test-user/movie-sentiment"]
    assert rows[0]["labels"] == ["ham", "spam"] and rows[0]["likes"] == 9


def test_hub_search_lists_private_adapters_to_their_owner_only(published, capsys):
    _, mine, _ = run(capsys, "hub", "search", "--token", published.token, "--endpoint", published.endpoint)
    _, theirs, _ = run(capsys, "hub", "search", "--token", published.other_token, "--endpoint", published.endpoint)

    assert "test-user/secret-sentiment (private)" in mine
    assert "secret-sentiment" not in theirs


def test_hub_search_pages_say_where_the_next_one_is(published, capsys):
    _, first, more = run(capsys, "hub", "search", "--limit", "1", "--endpoint", published.endpoint)
    _, second, last = run(capsys, "hub", "search", "--limit", "1", "--page", "2", "--endpoint", published.endpoint)

    assert "movie-sentiment" in first and more.strip() == "more on page 2: add --page 2"
    assert "sms-spam" in second and last == ""


def test_hub_search_without_a_match_says_so_and_succeeds(published, capsys):
    code, out, err = run(capsys, "hub", "search", "no", "such", "--json", "--endpoint", published.endpoint)

    assert code == 0 and out == ""
    assert err.strip() == "no published ptuning adapter whose repo id holds 'no such' on page 1"


# -- bad input: one line on stderr, exit status 2 ---------------------------------------------------------


def bad_inputs(trained, tiny, tmp: Path) -> dict[str, list]:
    data, adapter = trained["data"], trained["adapter"]
    unknown = write_csv(tmp / "unknown.csv", zip(["good", "bad", "so so"], ["pos", "neg", "meh"]))
    out = ["--out", tmp / "out", "--model", tiny("bert"), *FAST]
    return {
        "missing file": ["train", tmp / "missing.csv", *out],
        "wrong column": ["train", data, "--text-column", "review", *out],
        "unknown label in evaluate": ["evaluate", adapter, unknown],
        "peft-compatible with deep": ["train", data, "--peft-compatible", "--method", "deep", *out],
        "peft-compatible with middle": ["train", data, "--peft-compatible", "--placement", "middle", *out],
        "bad placement": ["train", data, "--placement", "everywhere", *out],
        "unknown method": ["train", data, "--method", "magic", *out],
        "missing --out": ["train", data],
        "negative epochs": ["train", data, *out, "--epochs", "-1"],
        "resume without checkpoint": ["train", data, *out, "--resume"],
        "missing adapter": ["evaluate", tmp / "no-adapter", data],
        "predict without texts": ["predict", adapter],
        "predict to an unknown format": ["predict", adapter, "hi", "--output", tmp / "p.xml"],
        "init-adapter with adapter options": ["train", data, *out, "--init-adapter", adapter, "--method", "deep"],
        "inspect with --top 0": ["inspect", adapter, "--top", "0"],
        "search with --resume": ["train", data, *out, "--search", "2", "--resume"],
        "hub search sorted by an unknown key": ["hub", "search", "--sort", "stars"],
        "hub search on page 0": ["hub", "search", "--page", "0"],
        "hub search of 0 a page": ["hub", "search", "--limit", "0"],
    }


CASES = [
    "missing file", "wrong column", "unknown label in evaluate", "peft-compatible with deep",
    "peft-compatible with middle", "bad placement", "unknown method", "missing --out", "negative epochs",
    "resume without checkpoint", "missing adapter", "predict without texts", "predict to an unknown format",
    "init-adapter with adapter options", "inspect with --top 0", "search with --resume",
    "hub search sorted by an unknown key", "hub search on page 0", "hub search of 0 a page",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(trained, tiny, tmp_path, capsys, case):
    code, out, err = run(capsys, *bad_inputs(trained, tiny, tmp_path)[case])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err


def test_unknown_label_error_names_the_label(trained, tmp_path, capsys):
    unknown = write_csv(tmp_path / "u.csv", zip(["good", "so so"], ["pos", "meh"]))
    code, out, err = run(capsys, "evaluate", trained["adapter"], unknown)
    assert "'meh'" in err


# -- the real entry point ---------------------------------------------------------------------------------


def python_m_ptuning(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptuning", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_python_m_ptuning_help_lists_the_commands():
    done = python_m_ptuning("--help")
    assert done.returncode == 0
    assert all(command in done.stdout for command in ("train", "evaluate", "predict", "push", "inspect", "hub"))


def test_python_m_ptuning_bad_file_exits_2_with_one_line(tmp_path):
    done = python_m_ptuning("train", tmp_path / "missing.csv", "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: file not found: {tmp_path / 'missing.csv'}"]
    assert done.stdout == ""
