"""Adapters by name for a server: registered sources, loaded on first use, least recently used out.

A name maps to a directory or a Hub repo id. An adapter is loaded when it is first asked for (or up front, with
``preload``), prepared once for serving (``prepare_for_serving``), and kept until more than ``max_loaded`` are held:
then the least recently used one is dropped, and loaded again from its source when it is asked for next. With
``allow_hub_load`` a name that was never registered is taken as a Hub repo id, downloaded without the operator's
token (the repo is the caller's choice, not the operator's).

Every adapter must name the server's base model: it is refused, before anything is loaded, otherwise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..adapter_files import MAX_ADAPTER_BYTES, adapter_base_model
from ..backbones import Backbone, resolve_backbone
from ..encoders import PromptTable
from ..errors import AdapterError, HubError, NotFoundError
from ..hub import adapter_directory, is_repo_id
from ..model import PromptClassifier
from .metrics import ServingMetrics


@dataclass(frozen=True)
class AdapterSource:
    """Where a named adapter comes from; ``operator`` sources may use the server's own Hub token."""

    location: str
    operator: bool


def prepare_for_serving(clf: PromptClassifier) -> PromptClassifier:
    """Freeze ``clf`` for inference: the p-tuning encoder is run once and replaced by its output table."""
    with torch.no_grad():
        vectors = clf.prompt_vectors().detach().float().clone()
    clf.prompt = PromptTable(vectors).to(clf.device)
    clf.requires_grad_(False)
    return clf.eval()


class AdapterRegistry:
    """Named adapters over one backbone; safe to call from any thread."""

    def __init__(
        self,
        backbone: Backbone,
        *,
        max_loaded: int = 1000,
        allow_hub_load: bool = False,
        endpoint: str | None = None,
        metrics: ServingMetrics | None = None,
    ):
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self.backbone = backbone
        self.max_loaded = max_loaded
        self.allow_hub_load = allow_hub_load
        self.endpoint = endpoint
        self.metrics = metrics or ServingMetrics()
        self._sources: dict[str, AdapterSource] = {}
        self._loaded: OrderedDict[str, PromptClassifier] = OrderedDict()
        self._summaries: dict[str, dict] = {}  # kept after eviction: /v1/models lists what it knows without loading
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def register(self, name: str, location: str | Path, *, preload: bool = False) -> None:
        """Serve the adapter at ``location`` (a directory or a Hub repo id) as ``name``."""
        name = str(name).strip()
        if not name:
            raise AdapterError("an adapter needs a non-empty name")
        with self._lock:
            self._sources[name] = AdapterSource(str(location), operator=True)
            self._loaded.pop(name, None)  # a re-registered name serves its new source from the next request on
        if preload:
            self.get(name)

    def names(self) -> list[str]:
        """Registered names, then names loaded from the Hub on request that are still known."""
        with self._lock:
            return list(dict.fromkeys([*self._sources, *self._loaded, *self._summaries]))

    def summary(self, name: str) -> dict | None:
        """What the adapter is (labels, task, method, base) once it has been loaded; None before."""
        with self._lock:
            return self._summaries.get(name)

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._loaded

    def get(self, name: str) -> PromptClassifier:
        """The adapter called ``name``, loading it if needed (concurrent first requests load it once)."""
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            source = self._sources.get(name)
            if source is None:
                if not (self.allow_hub_load and is_repo_id(name)):
                    hint = "" if self.allow_hub_load else " (this server does not load other adapters from the Hub)"
                    raise NotFoundError(f"no adapter named {name!r}; GET /v1/models lists the adapters served{hint}")
                source = AdapterSource(name, operator=False)
            lock = self._loading.setdefault(name, threading.Lock())
        with lock:
            with self._lock:
                if name in self._loaded:  # another thread loaded it while this one waited
                    self._loaded.move_to_end(name)
                    return self._loaded[name]
            try:
                clf = self._load(name, source)
            finally:
                with self._lock:
                    self._loading.pop(name, None)
            with self._lock:
                self._loaded[name] = clf
                self._summaries[name] = _summarise(clf, source)
                while len(self._loaded) > self.max_loaded:
                    self._loaded.popitem(last=False)
                    self.metrics.adapter_evictions.inc()
                self.metrics.adapters_loaded.set(len(self._loaded))
            self.metrics.adapter_loads.inc()
        return clf

    def _load(self, name: str, source: AdapterSource) -> PromptClassifier:
        # A caller-chosen repo never travels with the operator's token: token=False sends none.
        token = None if source.operator else False
        try:
            limit = None if source.operator else MAX_ADAPTER_BYTES  # a caller's repo may be of any size
            directory = adapter_directory(source.location, token=token, endpoint=self.endpoint, max_bytes=limit)
        except HubError as error:
            if source.operator:
                raise
            raise NotFoundError(f"no adapter named {name!r} here, and the Hub could not give one: {error}") from None
        base = adapter_base_model(directory)
        if not self.serves_base(base):
            raise AdapterError(
                f"adapter {name!r} was trained on base model {base!r}; this server serves {self.backbone.name!r} "
                "only (one server, one frozen backbone)"
            )
        clf = PromptClassifier.from_pretrained(directory, device=self.backbone.device, base_model=self.backbone.name)
        return prepare_for_serving(clf)

    def serves_base(self, base: str) -> bool:
        """Whether ``base`` names this registry's backbone (by recorded name or by the place it loads from)."""
        mine = resolve_backbone(self.backbone.name)
        theirs = resolve_backbone(base)
        return theirs[0] == mine[0] or Path(theirs[1]).expanduser().resolve() == Path(mine[1]).expanduser().resolve()


def _summarise(clf: PromptClassifier, source: AdapterSource) -> dict:
    c = clf.config
    return {
        "labels": list(c.labels),
        "task": c.task,
        "method": c.method.value,
        "num_virtual_tokens": c.num_virtual_tokens,
        "placement": c.placement,
        "base_model": c.base_model,
        "source": source.location,
    }
