"""Engines for adapter objects on any backbone: what the app uses so that its users' requests batch together.

    pool = EnginePool()
    pool.classify(clf, ["a gripping film"])      # clf: any PromptClassifier; one engine per backbone it runs on

Each backbone (base model and device) gets its own engine on first use; every caller whose adapter runs on it
shares that engine's queue and batches. Long lists are sent in requests of ``max_inputs`` texts, one after the other,
so one user's file never fills the queue for everyone else.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from ..model import PromptClassifier
from .engine import Engine, ServingConfig


class EnginePool:
    """One ``Engine`` per backbone, made when first needed; thread-safe."""

    def __init__(self, config: ServingConfig | None = None):
        self.config = config or ServingConfig()
        self._engines: dict[int, Engine] = {}
        self._lock = threading.Lock()

    def engine_for(self, clf: PromptClassifier) -> Engine:
        backbone = clf.backbone
        with self._lock:
            engine = self._engines.get(id(backbone))
            if engine is None:
                # load_backbone caches by name and device, so the engine gets this very backbone object
                config = dataclasses.replace(self.config, base_model=backbone.name, device=str(backbone.device))
                engine = self._engines[id(backbone)] = Engine(config)
            return engine

    def classify(self, clf: PromptClassifier, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list:
        """Predictions for ``texts``, as ``clf.predict`` gives them (plus ``num_tokens``), batched with others."""
        engine = self.engine_for(clf)
        step = engine.config.max_inputs
        out: list = []
        for start in range(0, len(texts), step):
            pairs = None if text_pairs is None else text_pairs[start : start + step]
            out += engine.submit(clf, texts[start : start + step], pairs).result()
        return out

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()
