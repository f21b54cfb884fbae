"""``python -m ptuning serve``: one process, one engine, the HTTP face, uvicorn.

    python -m ptuning serve --adapter movie=out/movie --adapter spam=user/sms-spam-prompt --port 8000
    curl -s localhost:8000/classify -H 'content-type: application/json' -d '{"model": "movie", "input": "a gripping film"}'

The backbone and every named adapter load before the port opens, so a bad adapter stops the start with one line.
SIGINT/SIGTERM: uvicorn stops taking connections, the requests in flight and queued are answered, then it exits.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from .engine import Engine, ServingConfig
from .http import EngineBackend, create_app


def parse_adapter_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["movie=out/movie", "spam=user/repo"]`` -> ``{"movie": "out/movie", "spam": "user/repo"}``.

    A spec without ``NAME=`` is named after its last path part (``out/movie`` serves as ``movie``).
    """
    adapters: dict[str, str] = {}
    for spec in specs:
        name, sep, location = spec.partition("=")
        if not sep:
            name, location = spec.rstrip("/").rsplit("/", 1)[-1], spec
        name, location = name.strip(), location.strip()
        if not name or not location:
            raise ConfigError(f"--adapter {spec!r}: write NAME=PATH_OR_REPO_ID, e.g. movie=out/movie")
        if name in adapters:
            raise ConfigError(f"--adapter: the name {name!r} is given twice")
        adapters[name] = location
    return adapters


def serve(config: ServingConfig, adapters: dict[str, str], host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info", access_log: bool = False) -> None:  # fmt: skip
    """Load everything, then serve HTTP until interrupted. A line per request only with ``access_log``."""
    import uvicorn

    engine = Engine(config, adapters)
    app = create_app(EngineBackend(engine), engine.metrics, max_body_bytes=config.max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=30)
