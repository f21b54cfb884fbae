"""Finding published adapters (ptuning.hub_search) on the loopback Hub, which lists as the Hub does."""

import functools
from datetime import datetime, timezone

import pytest
from huggingface_hub.utils import _http, _pagination

from ptuning.errors import ConfigError, HubError
from ptuning.hub_search import search_adapters
from ptuning.model_card import make_model_card
from tests.test_hub import closed_port_endpoint

BASE = "prajjwal1/bert-tiny"


def publish(hub, repo_id: str, *, downloads: int = 0, likes: int = 0, updated: str | None = None, private=False,
            card: str | None = None, **info) -> None:  # fmt: skip
    """A repo whose README is the card ptuning writes for ``info`` (or ``card`` as it is), and its counts."""
    text = card if card is not None else str(make_model_card({"base_model": BASE, "repo_id": repo_id, **info}))
    hub.create_repo(repo_id, private=private)
    commit = hub.commit(repo_id, {"README.md": text.encode(), "adapter_config.json": b"{}"})
    repo = hub.repos[repo_id]
    repo.downloads, repo.likes = downloads, likes
    if updated:
        commit.date = updated


def ids(page) -> list[str]:
    return [row.repo_id for row in page.rows]


@pytest.fixture
def listed(hub_server):
    """Three public adapters and a repo of another library on the test Hub."""
    publish(hub_server, "test-user/movie-sentiment", downloads=30, likes=1, updated="2024-01-03T00:00:00.000Z",
            labels=["negative", "positive"], method="deep", metrics={"accuracy": 0.81, "macro_f1": 0.8})  # fmt: skip
    publish(hub_server, "test-user/sms-spam", downloads=10, likes=5, updated="2024-01-01T00:00:00.000Z",
            labels=["ham", "spam"], method="prompt")  # fmt: skip
    publish(hub_server, "test-user/sentiment-scores", downloads=20, likes=3, updated="2024-01-02T00:00:00.000Z",
            task="regression", method="p-tuning", metrics={"mse": 0.2, "pearson": 0.7})  # fmt: skip
    publish(hub_server, "test-user/sentiment-bert", card="---\nlibrary_name: transformers\n---\nA whole model.\n")
    return hub_server


def search(hub, words=None, **options):
    return search_adapters(words, endpoint=hub.endpoint, token=options.pop("token", False), **options)


def test_words_find_the_ptuning_adapters_whose_repo_id_holds_them(listed):
    assert ids(search(listed, "SENTIMENT")) == ["test-user/movie-sentiment", "test-user/sentiment-scores"]
    assert ids(search(listed, "  spam ")) == ["test-user/sms-spam"]


def test_blank_words_list_every_ptuning_adapter(listed):
    assert len(search(listed, "").rows) == len(search(listed, None).rows) == 3


def test_no_match_is_an_empty_page(listed):
    page = search(listed, "no-such-words")

    assert page.rows == [] and not page.has_next


def test_a_row_holds_what_the_card_says_and_nothing_is_downloaded(listed):
    row = search(listed, "movie").rows[0]

    assert row.labels == ("negative", "positive") and row.task == "classification"
    assert (row.base_model, row.method) == (BASE, "deep")
    assert (row.metric, row.metric_value) == ("accuracy", 0.81)
    assert (row.downloads, row.likes, row.private) == (30, 1, False)
    assert row.last_modified == datetime(2024, 1, 3, tzinfo=timezone.utc)
    assert {path for _, path in listed.requests} == {"/api/models"}  # no file, no card was fetched


def test_a_regression_row_shows_its_headline_metric(listed):
    row = search(listed, "scores").rows[0]

    assert (row.task, row.labels, row.metric, row.metric_value) == ("regression", (), "pearson", 0.7)


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("downloads", ["movie-sentiment", "sentiment-scores", "sms-spam"]),
        ("likes", ["sms-spam", "sentiment-scores", "movie-sentiment"]),
        ("updated", ["movie-sentiment", "sentiment-scores", "sms-spam"]),
    ],
)
def test_sorting_puts_the_largest_or_latest_first(listed, sort, order):
    assert ids(search(listed, sort=sort)) == [f"test-user/{name}" for name in order]


def test_pages_follow_one_another_across_the_hubs_own_pages(listed):
    listed.page_size = 1  # the client must follow the Link header to reach a second page

    first, second = search(listed, per_page=2), search(listed, per_page=2, page=1)

    assert ids(first) == ["test-user/movie-sentiment", "test-user/sentiment-scores"] and first.has_next
    assert ids(second) == ["test-user/sms-spam"] and not second.has_next


def test_a_private_adapter_is_listed_only_to_its_owners_token(listed):
    publish(listed, "test-user/private-prompt", private=True, labels=["a", "b"])

    assert "test-user/private-prompt" not in ids(search(listed))
    assert "test-user/private-prompt" not in ids(search(listed, token=listed.other_token))
    mine = {row.repo_id: row for row in search(listed, token=listed.token).rows}
    assert mine["test-user/private-prompt"].private


def test_without_a_token_argument_the_local_login_is_used(listed, monkeypatch):
    publish(listed, "test-user/private-prompt", private=True)
    monkeypatch.setenv("HF_TOKEN", listed.token)

    assert "test-user/private-prompt" in ids(search_adapters(endpoint=listed.endpoint))
    assert "test-user/private-prompt" not in ids(search_adapters(endpoint=listed.endpoint, token=False))


def test_a_card_without_metadata_gives_a_row_of_what_the_hub_knows(hub_server):
    publish(hub_server, "test-user/bare", card="---\ntags: [ptuning]\n---\nNo more.\n", downloads=2)
    publish(hub_server, "test-user/odd", card="---\ntags: [ptuning]\nlabels: 7\nptuning: yes\nmodel-index: 3\n---\n")

    rows = {row.repo_id: row for row in search(hub_server).rows}

    assert rows["test-user/bare"].downloads == 2
    for row in rows.values():
        assert (row.labels, row.task, row.base_model, row.method, row.metric) == ((), None, None, None, None)


def test_an_unknown_sort_or_page_is_a_config_error(listed):
    with pytest.raises(ConfigError, match="choose one of downloads, likes, updated"):
        search(listed, sort="stars")
    with pytest.raises(ConfigError, match="1 to 100 adapters"):
        search(listed, per_page=0)
    with pytest.raises(ConfigError, match="from 0"):
        search(listed, page=-1)


def test_a_rejected_token_is_a_hub_error_that_does_not_show_it(listed):
    wrong = "hf_wrongWrongWrong0123456789"

    with pytest.raises(HubError, match="rejected the token") as error:
        search(listed, token=wrong)

    assert wrong not in str(error.value)


def test_an_unreachable_hub_is_a_hub_error(hub_server, monkeypatch):  # the fixture isolates the client
    # A listing retries a lost connection 5 times over 23 s (huggingface_hub's backoff): here it gives up at once
    monkeypatch.setattr(_pagination, "http_backoff", functools.partial(_http.http_backoff, max_retries=0))

    with pytest.raises(HubError, match="cannot reach"):
        search_adapters("x", endpoint=closed_port_endpoint(), token=False)


def test_a_row_becomes_plain_json(listed):
    row = search(listed, "movie").rows[0].as_dict()

    assert row["labels"] == ["negative", "positive"] and row["last_modified"].startswith("2024-01-03")
