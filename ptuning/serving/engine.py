"""The serving engine: requests for many adapters, from many threads, batched into shared backbone passes.

    engine = Engine(ServingConfig(), adapters={"movie": "out/movie"})
    engine.classify("movie", ["a gripping film"])     # [{"label": "positive", "score": 0.93, "scores": {...}, ...}]
    future = engine.submit("movie", ["dull"])          # from any thread; future.result() when it is done

``submit`` runs in the caller's thread: it checks the limits, resolves the adapter (loading it on first use),
cuts and tokenises the texts, and queues them, or refuses at once when the queue is full. One worker thread owns
the device (TEI's router has the same shape): it waits for a first request, then for more until a batch is full
(``max_batch_size`` texts or ``max_batch_tokens`` tokens) or the first has waited ``max_wait_ms``, classifies the
whole batch (every adapter in it) with ``model.logits_mixed``, and completes each request's future. A batch that
fails fails its own requests only; the worker carries on. ``close()`` answers everything already queued first.

The engine knows nothing of HTTP: the server (``serving.http``), the app and Ray Serve replicas are faces over it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..backbones import PRECISION_ENV, default_device, load_backbone
from ..errors import ConfigError, OverloadedError, RequestTooLargeError
from ..model import PromptClassifier, describe, logits_mixed
from .metrics import ServingMetrics
from .registry import AdapterRegistry


def server_precision(config: "ServingConfig", environ: dict) -> None:
    """A server runs for days: on a CPU it runs the backbone in fp32 unless ``PTUNING_PRECISION`` (in ``environ``)
    says otherwise. bf16 on this project's CPU (through oneDNN) grew a server's resident memory 27 % in 25 minutes of
    adapter churn, and an in-process engine's steadily under load, where fp32 stayed flat (BENCHMARKS.md, issue 24);
    training runs, which end, keep the faster bf16."""
    device = config.device or default_device().type
    if PRECISION_ENV not in environ and str(device).startswith("cpu"):
        environ[PRECISION_ENV] = "fp32"


@dataclass
class ServingConfig:
    """How a server batches and what it accepts; every field has a default that suits one small machine."""

    base_model: str = field(
        default="",
        metadata={
            "help": "The frozen backbone every adapter must share; empty: the embedded all-MiniLM-L6-v2.",
            "flag": "--model",
        },
    )
    device: str | None = field(default=None, metadata={"help": "cuda, mps or cpu; empty: the best available."})
    max_batch_size: int = field(default=32, metadata={"help": "Most texts in one backbone pass."})
    max_batch_tokens: int = field(
        default=16384, metadata={"help": "Most tokens (prompt and padding included) in one backbone pass."}
    )
    max_wait_ms: float = field(
        default=5.0,
        metadata={"help": "How long the first request of a batch waits for others to join it, in milliseconds."},
    )
    max_queue: int = field(
        default=1024, metadata={"help": "Most texts waiting for the device; past it requests get 503 and Retry-After."}
    )
    max_loaded: int = field(
        default=1000, metadata={"help": "Most adapters held in memory; the least recently used is dropped first."}
    )
    max_inputs: int = field(default=256, metadata={"help": "Most texts in one request (413 past it)."})
    max_input_chars: int = field(
        default=20000, metadata={"help": "Most characters in one text (413 past it); checked before tokenising."}
    )
    allow_hub_load: bool = field(
        default=False,
        metadata={"help": "Load adapters by Hub repo id on first request (without the server's token)."},
    )
    hub_endpoint: str | None = field(
        default=None, metadata={"help": "Hub endpoint; empty: https://huggingface.co.", "flag": "--endpoint"}
    )

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch_size >= 1, "max_batch_size must be at least 1"),
            (self.max_batch_tokens >= 1, "max_batch_tokens must be at least 1"),
            (self.max_wait_ms >= 0, "max_wait_ms must not be negative"),
            (self.max_queue >= 1, "max_queue must be at least 1"),
            (self.max_loaded >= 1, "max_loaded must be at least 1"),
            (self.max_inputs >= 1, "max_inputs must be at least 1"),
            (self.max_input_chars >= 1, "max_input_chars must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body worth reading: every text at its limit in 4-byte UTF-8, escaped, plus room."""
        return self.max_inputs * (self.max_input_chars * 4 + 16) + 65536


@dataclass(eq=False)
class _Request:
    adapter: PromptClassifier
    examples: list
    future: Future
    queued_at: float
    tokens: int = 0

    def __post_init__(self) -> None:
        self.tokens = sum(len(e.input_ids) for e in self.examples)


class Engine:
    """One backbone, its adapters, a bounded queue and the worker that batches it. Thread-safe."""

    def __init__(
        self,
        config: ServingConfig | None = None,
        adapters: Mapping[str, str] | None = None,
        *,
        metrics: ServingMetrics | None = None,
        preload: bool = True,
    ):
        self.config = config = config or ServingConfig()
        self.metrics = metrics or ServingMetrics()
        self.backbone = load_backbone(config.base_model or None, config.device)
        self.registry = AdapterRegistry(
            self.backbone, max_loaded=config.max_loaded, allow_hub_load=config.allow_hub_load,
            endpoint=config.hub_endpoint, metrics=self.metrics,
        )  # fmt: skip
        for name, location in (adapters or {}).items():
            self.registry.register(name, location, preload=preload)
        self._queue: deque[_Request] = deque()
        self._queued_texts = self._queued_tokens = 0
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="ptuning-engine", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------------------------------- callers
    def submit(
        self, adapter: str | PromptClassifier, texts: Sequence[str], text_pairs: Sequence[str] | None = None
    ) -> Future:
        """Queue ``texts`` for ``adapter`` (a registered name, or an adapter object on this backbone).

        The future's result is one dict per text, as ``PromptClassifier.predict`` gives, plus ``num_tokens``.
        Raises at once (``NotFoundError``, ``RequestTooLargeError``, ``OverloadedError``...) when the request
        cannot be queued.
        """
        texts = self._check(texts, text_pairs)
        clf = self.registry.get(adapter) if isinstance(adapter, str) else self._own(adapter)
        request = _Request(clf, clf.encode(texts, text_pairs).examples, Future(), 0.0)
        n = len(texts)
        with self._cond:
            if self._closed:
                raise OverloadedError("the server is shutting down; send the request to another replica", 5.0)
            if self._queued_texts + n > self.config.max_queue:
                self.metrics.rejected.inc()
                raise OverloadedError(
                    f"the queue is full ({self._queued_texts} texts waiting, at most {self.config.max_queue}): "
                    "retry shortly",
                    retry_after=1.0,
                )
            request.queued_at = time.perf_counter()
            self._queue.append(request)
            self._queued_texts += n
            self._queued_tokens += request.tokens
            self.metrics.queue_texts.set(self._queued_texts)
            self._cond.notify_all()
        return request.future

    def classify(
        self, adapter: str | PromptClassifier, texts: Sequence[str], text_pairs: Sequence[str] | None = None
    ) -> list[dict]:
        """``submit`` and wait for the answer."""
        return self.submit(adapter, texts, text_pairs).result()

    def close(self, drain: bool = True) -> None:
        """Stop taking requests; answer those already queued (``drain``) or fail them; stop the worker."""
        with self._cond:
            self._closed = True
            if not drain:
                while self._queue:
                    r = self._queue.popleft()
                    if r.future.set_running_or_notify_cancel():
                        r.future.set_exception(OverloadedError("the server shut down before this request ran"))
                self._queued_texts = self._queued_tokens = 0
            self._cond.notify_all()
        self._worker.join()

    @property
    def alive(self) -> bool:
        return self._worker.is_alive() and not self._closed

    def _check(self, texts: Sequence[str], text_pairs: Sequence[str] | None) -> list[str]:
        cfg = self.config
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ConfigError("give at least one text to classify")
        if len(texts) > cfg.max_inputs:
            raise RequestTooLargeError(
                f"{len(texts)} texts in one request; this server takes at most {cfg.max_inputs}: split the request"
            )
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ConfigError("give one second text per text, or none")
        for i, t in enumerate([*texts, *(text_pairs or [])]):
            if not isinstance(t, str):
                raise ConfigError(f"input {i % len(texts)} is not a string")
            if len(t) > cfg.max_input_chars:
                raise RequestTooLargeError(
                    f"input {i % len(texts)} has {len(t)} characters; this server takes at most {cfg.max_input_chars} "
                    "a text: shorten it"
                )
        return texts

    def _own(self, clf: PromptClassifier) -> PromptClassifier:
        if clf.backbone is not self.backbone:
            raise ConfigError(
                f"the adapter runs on {clf.backbone.name!r} ({clf.device}); this engine serves {self.backbone.name!r}"
                f" ({self.backbone.device})"
            )
        return clf

    # ------------------------------------------------------------------------------------------- the worker
    def _work(self) -> None:
        while (batch := self._take()) is not None:
            self._run(batch)

    def _take(self) -> list[_Request] | None:
        """The next batch: wait for a request, then for more until full or the first one's wait is over."""
        cfg = self.config
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._queue[0].queued_at + cfg.max_wait_ms / 1000
            while not self._closed and not self._full():
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[_Request] = []
            texts = tokens = 0
            while self._queue:
                r = self._queue[0]
                n = len(r.examples)
                if batch and (texts + n > cfg.max_batch_size or tokens + r.tokens > cfg.max_batch_tokens):
                    break
                self._queue.popleft()
                texts, tokens = texts + n, tokens + r.tokens
                if r.future.set_running_or_notify_cancel():  # a caller that gave up is skipped
                    batch.append(r)
            self._queued_texts -= texts
            self._queued_tokens -= tokens
            self.metrics.queue_texts.set(self._queued_texts)
            return batch

    def _full(self) -> bool:
        return self._queued_texts >= self.config.max_batch_size or self._queued_tokens >= self.config.max_batch_tokens

    def _run(self, batch: list[_Request]) -> None:
        if not batch:
            return
        start = time.perf_counter()
        adapters: list[PromptClassifier] = []
        index: dict[int, int] = {}
        examples, rows = [], []
        for r in batch:
            self.metrics.queue_wait.observe(start - r.queued_at)
            k = index.setdefault(id(r.adapter), len(adapters))
            if k == len(adapters):
                adapters.append(r.adapter)
            examples += r.examples
            rows += [k] * len(r.examples)
        try:
            cfg = self.config
            logits = logits_mixed(adapters, examples, rows, cfg.max_batch_size, cfg.max_batch_tokens)
        except Exception as error:  # noqa: BLE001 - one bad batch must not take the worker (and the server) down
            self.metrics.batch_errors.inc()
            for r in batch:
                r.future.set_exception(error)
            return
        self.metrics.batch_seconds.observe(time.perf_counter() - start)
        self.metrics.batch_size.observe(len(examples))
        self.metrics.batch_adapters.observe(len(adapters))
        self.metrics.texts.inc(len(examples))
        offset = 0
        for r in batch:
            answers = []
            for e, row in zip(r.examples, logits[offset : offset + len(r.examples)]):
                answers.append({**describe(r.adapter, row), "num_tokens": len(e.input_ids)})
            offset += len(r.examples)
            r.future.set_result(answers)
