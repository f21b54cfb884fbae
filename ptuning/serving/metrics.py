"""Prometheus metrics of a serving process, on a registry of its own (two engines in one process never clash).

The engine records what happens on the device (batch sizes, adapters per batch, queue wait, the adapter cache);
the HTTP face records what clients see (requests by status, latency). ``render()`` is the ``/metrics`` body.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServingMetrics:
    """Every metric the server exports, named ``ptuning_*``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter("ptuning_requests", "Classification requests answered, by HTTP status.", ["status"],
                                registry=r)  # fmt: skip
        self.texts = Counter("ptuning_texts", "Texts classified.", registry=r)
        self.request_latency = Histogram(
            "ptuning_request_latency_seconds", "From a request's arrival to its answer.", buckets=_SECONDS, registry=r
        )
        self.queue_wait = Histogram(
            "ptuning_queue_wait_seconds", "From a request's arrival in the queue to its batch's start.",
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram("ptuning_batch_size", "Texts per batch.", buckets=_SIZES, registry=r)
        self.batch_adapters = Histogram(
            "ptuning_batch_adapters", "Distinct adapters per batch.", buckets=_SIZES, registry=r
        )
        self.batch_seconds = Histogram(
            "ptuning_batch_seconds", "Device time of one batch (all its backbone passes).", buckets=_SECONDS, registry=r
        )
        self.batch_errors = Counter("ptuning_batch_errors", "Batches that failed on the device.", registry=r)
        self.queue_texts = Gauge("ptuning_queue_texts", "Texts waiting for the device.", registry=r)
        self.rejected = Counter("ptuning_rejected", "Requests refused because the queue was full.", registry=r)
        self.adapters_loaded = Gauge("ptuning_adapters_loaded", "Adapters held in memory.", registry=r)
        self.adapter_loads = Counter("ptuning_adapter_loads", "Adapters loaded (first use or after eviction).",
                                     registry=r)  # fmt: skip
        self.adapter_evictions = Counter(
            "ptuning_adapter_evictions", "Adapters dropped from memory, least recently used first.", registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text format of every metric above."""
        return generate_latest(self.registry)
