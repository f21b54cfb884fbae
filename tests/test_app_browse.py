"""The app's Browse tab and its ``?adapter=`` links, against the loopback Hub: find an adapter by a word, see what it
classifies, load it into Classify through the same checks as a typed repo id.

The handlers are called as the tab's events call them (each returns the outputs of its event, in order); one test
goes through the launched app's API, the browser test walks the same path with a mouse.
"""

import dataclasses
import functools
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest
from gradio_client import Client
from huggingface_hub.utils import _http, _pagination

from app import (
    ADAPTERS_PER_PAGE, SORT_LABELS, BrowseView, build_app, load_chosen, open_linked_adapter, search_published,
    turn_page,
)  # fmt: skip
from ptuning import EMBEDDED_ID, PromptClassifier
from ptuning.hub import push_adapter
from ptuning.hub_search import SORTS
from ptuning.model_card import make_model_card
from ptuning.policy import AppSettings
from tests.test_app_security import foreign_adapter
from tests.test_hub import closed_port_endpoint

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword):Warning")
MOVIES, SMS, HUGE = "test-user/movie-sentiment", "test-user/sms-spam", "test-user/huge-sentiment"
FIELDS = [f.name for f in dataclasses.fields(BrowseView)]


@pytest.fixture
def settings(tiny):
    """An operator who allows the tiny BERT beside the default."""
    return AppSettings(allowed_base_models=(EMBEDDED_ID, tiny("bert")))


@pytest.fixture
def hub(hub_server, tiny, make, tmp_path):
    """On the test Hub: a movie and an SMS adapter on the tiny BERT, and one whose files name a base not allowed."""
    for repo_id, labels in ((MOVIES, ["negative", "positive"]), (SMS, ["ham", "spam"])):
        PromptClassifier(tiny("bert"), labels=labels).push_to_hub(repo_id, token=hub_server.token,
                                                                  endpoint=hub_server.endpoint)  # fmt: skip
    folder = foreign_adapter(tiny, make, tmp_path / "huge", "someone/a-huge-model")
    make_model_card({"base_model": "someone/a-huge-model", "labels": ["neg", "pos"]}).save(folder / "README.md")
    push_adapter(folder, HUGE, token=hub_server.token, endpoint=hub_server.endpoint)
    for repo_id, downloads, likes in ((MOVIES, 30, 1), (SMS, 20, 9), (HUGE, 10, 0)):
        hub_server.repos[repo_id].downloads, hub_server.repos[repo_id].likes = downloads, likes
    return hub_server


def listed(hub, settings, words="", sort="Most downloaded", token="") -> dict:
    """What a search shows, by BrowseView field."""
    return dict(zip(FIELDS, search_published(words, sort, token, hub.endpoint, settings=settings)))


def adapters(shown: dict) -> list[str]:
    return list(shown["table"]["adapter"])


def click(listing: dict, row: int) -> gr.SelectData:
    """The event of a click on a row of the table that ``listing`` fills."""
    return gr.SelectData(None, {"index": [row, 2], "value": "", "row_value": [listing["repo_ids"][row]]})


def link(query: dict) -> SimpleNamespace:
    """The request of a page opened at ``/?`` + ``query``."""
    return SimpleNamespace(query_params=query)


# -- finding -------------------------------------------------------------------------------------------------
def test_a_word_finds_the_adapters_and_shows_what_they_classify(hub, settings):
    shown = listed(hub, settings, "sentiment")

    assert adapters(shown) == [MOVIES, HUGE]
    movies = shown["table"].iloc[0]
    assert (movies["task"], movies["labels"], movies["method"]) == ("classification", "negative, positive", "deep")
    assert movies["downloads"] == 30 and movies["updated"] != "–"
    assert shown["table"].iloc[1]["base model"] == "someone/a-huge-model"
    assert "Click a row" in shown["status"] and "`sentiment`" in shown["status"]


def test_every_sort_the_tab_offers_is_one_the_library_knows(hub, settings):
    assert set(SORT_LABELS.values()) <= set(SORTS)
    assert adapters(listed(hub, settings, sort="Most liked")) == [SMS, MOVIES, HUGE]


def test_an_empty_search_lists_every_adapter(hub, settings):
    assert adapters(listed(hub, settings, "   ")) == [MOVIES, SMS, HUGE]


def test_a_search_that_finds_nothing_says_what_to_try(hub, settings):
    shown = listed(hub, settings, "weather")

    assert shown["table"].empty and list(shown["table"].columns)[:3] == ["adapter", "task", "labels"]
    assert "No published ptuning adapter has `weather` in its repo id: try another word" in shown["status"]


def test_pages_turn_forward_and_back(hub, settings):
    for i in range(ADAPTERS_PER_PAGE):
        hub.commit(f"test-user/more-{i:02d}", {"README.md": b"---\ntags: [ptuning]\n---\n"})
    first = listed(hub, settings)

    second = dict(zip(FIELDS, turn_page(first["listing"], "", hub.endpoint, step=1, settings=settings)))
    back = dict(zip(FIELDS, turn_page(second["listing"], "", hub.endpoint, step=-1, settings=settings)))

    assert len(first["table"]) == ADAPTERS_PER_PAGE and first["next"].interactive and not first["previous"].interactive
    assert len(second["table"]) == 3 and second["previous"].interactive and not second["next"].interactive
    assert not set(adapters(first)) & set(adapters(second))
    assert adapters(back) == adapters(first)


def test_private_adapters_are_listed_with_the_visitors_own_token_only(hub, settings, monkeypatch):
    hub.create_repo("test-user/secret", private=True)
    hub.commit("test-user/secret", {"README.md": b"---\ntags: [ptuning]\n---\n"})
    monkeypatch.setenv("HF_TOKEN", hub.token)  # the operator is logged in: that login is never lent to a visitor

    assert "test-user/secret" not in adapters(listed(hub, settings))
    assert "test-user/secret (private)" in adapters(listed(hub, settings, token=hub.token))


def test_a_hub_that_cannot_be_reached_is_one_line_in_the_tab(hub_server, settings, monkeypatch):
    monkeypatch.setattr(_pagination, "http_backoff", functools.partial(_http.http_backoff, max_retries=0))  # no retry

    shown = dict(zip(FIELDS, search_published("x", "Most downloaded", "", closed_port_endpoint(), settings=settings)))

    assert shown["status"].startswith("**Could not list the adapters:** cannot reach")
    assert isinstance(shown["table"], type(gr.skip()))  # the last listing stays


# -- loading -------------------------------------------------------------------------------------------------
def test_a_click_on_a_row_loads_its_adapter_and_opens_classify(hub, settings):
    shown = listed(hub, settings, "sms")

    model, message, tabs = load_chosen(shown["listing"], "", hub.endpoint, click(shown["listing"], 0),
                                       settings=settings)  # fmt: skip

    assert model.config.labels == ["ham", "spam"] and message == f"Loaded `{SMS}`."
    assert tabs.selected == "classify"


def test_a_row_whose_adapter_names_a_base_not_allowed_here_is_refused_before_it_loads(hub, settings, monkeypatch):
    from ptuning import backbones

    shown = listed(hub, settings, "huge")
    monkeypatch.setattr(backbones, "_load", lambda *a: pytest.fail(f"{a[1]} was loaded"))

    with pytest.raises(gr.Error, match="the adapter's base model 'someone/a-huge-model' is not allowed here"):
        load_chosen(shown["listing"], "", hub.endpoint, click(shown["listing"], 0), settings=settings)


def test_a_row_whose_repo_vanished_since_the_listing_says_so(hub, settings):
    shown = listed(hub, settings, "movie")
    del hub.repos[MOVIES]

    with pytest.raises(gr.Error, match=f"repository '{MOVIES}' not found"):
        load_chosen(shown["listing"], "", hub.endpoint, click(shown["listing"], 0), settings=settings)


def test_a_click_outside_the_rows_shown_loads_nothing(hub, settings):
    shown = listed(hub, settings, "movie")
    stray = gr.SelectData(None, {"index": [5, 0], "value": "", "row_value": ["test-user/not-listed"]})

    with pytest.raises(gr.Error, match="Click a row of the list"):
        load_chosen(shown["listing"], "", hub.endpoint, stray, settings=settings)


# -- links ---------------------------------------------------------------------------------------------------
def test_a_link_loads_its_adapter_and_opens_classify(hub, settings):
    model, message, tabs = open_linked_adapter("", hub.endpoint, link({"adapter": MOVIES}), settings=settings)

    assert model.config.labels == ["negative", "positive"]
    assert message == f"Loaded `{MOVIES}` from the link." and tabs.selected == "classify"


@pytest.mark.parametrize(
    ("target", "said"),
    [
        (HUGE, "the adapter's base model 'someone/a-huge-model' is not allowed here"),
        ("test-user/gone", "repository 'test-user/gone' not found"),
        ('<img src=x onerror="alert(1)">', "is not a valid repo id"),
    ],
)
def test_a_link_that_cannot_load_says_why_on_the_classify_tab(hub, settings, target, said):
    model, message, tabs = open_linked_adapter("", hub.endpoint, link({"adapter": target}), settings=settings)

    assert isinstance(model, type(gr.skip())) and tabs.selected == "classify"
    assert message.startswith("**The linked adapter did not load:**") and said in message.replace("\\", "")
    assert "<img" not in message.replace("\\<", "")  # the link's text is shown (escaped), never run


def test_a_page_opened_without_a_link_changes_nothing(settings):
    assert all(isinstance(out, type(gr.skip())) for out in open_linked_adapter("", None, link({}), settings=settings))


# -- the launched app ----------------------------------------------------------------------------------------
def test_the_search_is_a_named_endpoint_of_the_app(hub, settings, launch):
    session = Client(launch(build_app(hub.endpoint, settings=settings), settings), verbose=False)

    table, status = session.predict("spam", "Most downloaded", "", api_name="/search_adapters")

    assert pd.DataFrame(table["data"], columns=table["headers"])["adapter"].tolist() == [SMS]
    assert "Click a row" in status
