"""Finding published adapters: the Hub's repos made with ptuning, searched and sorted by the Hub, a page at a time,
each read from its card's metadata (``model_card.read_card_data``): nothing is downloaded to list them.

    page = search_adapters("sentiment", sort="downloads")
    for row in page.rows:
        print(row.repo_id, row.labels, row.metric, row.metric_value)

The words go to the Hub's own search, which looks for them as written in the repo ids (``alice/movie-sentiment`` for
"sentiment"). A private repo is listed only to its owner's token (``token=False`` sends none).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from huggingface_hub import HfApi, get_token

from .errors import ConfigError
from .hub import HUB_FAILURES, hub_error
from .model_card import TAGS, read_card_data

# Our names for the orders a listing can take -> list_models' (always the largest first, as the Hub sorts)
SORTS = {"downloads": "downloads", "likes": "likes", "updated": "last_modified"}
MAX_PER_PAGE = 100
LIBRARY_TAG = TAGS[0]  # every card ptuning writes has it; the Hub tags a repo with its card's library_name too


@dataclass(frozen=True)
class PublishedAdapter:
    """One adapter on the Hub, as a visitor chooses it: what it classifies, on what, how well, how used.

    The card's facts are None (or no labels) where its card does not say them (an older ptuning, another library).
    """

    repo_id: str
    labels: tuple[str, ...]
    task: str | None
    base_model: str | None
    method: str | None
    metric: str | None  # the card's headline metric ("accuracy"), measured on its own validation data
    metric_value: float | None
    downloads: int
    likes: int
    last_modified: datetime | None
    private: bool

    def as_dict(self) -> dict:
        """The row as plain JSON types (the date as ISO 8601)."""
        row = asdict(self)
        row["labels"] = list(self.labels)
        row["last_modified"] = self.last_modified.isoformat() if self.last_modified else None
        return row


@dataclass(frozen=True)
class AdapterPage:
    """One page of a listing: ``rows`` in the order asked for, page ``page`` (from 0) of ``per_page`` rows."""

    rows: list[PublishedAdapter]
    page: int
    per_page: int
    has_next: bool


def search_adapters(
    words: str | None = None,
    *,
    sort: str = "downloads",
    page: int = 0,
    per_page: int = 20,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> AdapterPage:
    """The ptuning adapters on the Hub whose repo id holds ``words`` (None or blank: all of them), sorted by ``sort``
    (``"downloads"``, ``"likes"``, ``"updated"``: largest or latest first); page ``page`` of ``per_page`` rows.

    One listing call (``HfApi.list_models`` with the card metadata), following the Hub's pages as far as this page
    needs. ``token`` defaults to the one huggingface_hub finds; ``False`` sends none (public repos only). A refusal
    or an unreachable Hub is a HubError, a bad ``sort`` or page a ConfigError.

    >>> [row.repo_id for row in search_adapters("sentiment").rows]  # doctest: +SKIP
    ['alice/movie-sentiment', 'bob/sentiment-de']
    """
    if sort not in SORTS:
        raise ConfigError(f"cannot sort by {sort!r}: choose one of {', '.join(SORTS)}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ConfigError(f"a page holds 1 to {MAX_PER_PAGE} adapters, not {per_page}")
    if page < 0:
        raise ConfigError(f"pages count from 0, not {page}")
    query = " ".join((words or "").split()) or None
    skip = page * per_page
    api = HfApi(endpoint=endpoint, token=token)
    try:
        listed = list(
            api.list_models(
                filter=LIBRARY_TAG, search=query, sort=SORTS[sort], limit=skip + per_page + 1, full=True,
                cardData=True, token=token,
            )
        )  # fmt: skip
    except HUB_FAILURES as err:
        secret = token if token is not None else get_token()
        raise hub_error(err, endpoint=api.endpoint, action="list the adapters", secret=secret) from err
    rows = [published_adapter(info) for info in listed[skip : skip + per_page]]
    return AdapterPage(rows=rows, page=page, per_page=per_page, has_next=len(listed) > skip + per_page)


def published_adapter(info) -> PublishedAdapter:
    """The row of one ``huggingface_hub.ModelInfo`` from a listing with ``cardData``."""
    facts = read_card_data(info.card_data)
    return PublishedAdapter(
        repo_id=info.id,
        labels=facts.labels,
        task=facts.task,
        base_model=facts.base_model,
        method=facts.method,
        metric=facts.metric,
        metric_value=facts.metric_value,
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        last_modified=info.last_modified,
        private=bool(info.private),
    )
