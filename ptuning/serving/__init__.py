"""Serving many prompt adapters over one frozen backbone: the engine (no HTTP), then its faces.

- ``registry``: adapters by name, loaded on first use, least recently used out, one base model;
- ``engine``: the bounded queue and the worker that batches requests for any adapters into shared passes;
- ``pool``: one engine per backbone for adapter objects (the app's users batch together);
- ``metrics``: what a server exports to Prometheus;
- ``protocol`` and ``http``: the vLLM-style HTTP API (FastAPI), ``python -m ptuning serve``;
- ``ray_serve``: the same engine as Ray Serve replicas, multiplexed by adapter.
"""

from .engine import Engine, ServingConfig
from .registry import AdapterRegistry, prepare_for_serving

__all__ = ["AdapterRegistry", "Engine", "ServingConfig", "prepare_for_serving"]
