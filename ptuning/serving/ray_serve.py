"""Scale-out on Ray Serve: the same engine in every replica, requests routed to replicas that hold their adapter.

Two deployments:
- ``AdapterReplica`` holds an ``Engine`` (one frozen backbone, its batching worker). Adapters are Ray Serve
  *multiplexed models*: the router sends a request for adapter X to a replica that already loaded X when there is
  one (``serve.multiplexed`` / ``serve.get_multiplexed_model_id``), so thousands of adapters spread over the
  replicas and each replica's batches mix the adapters it holds. Replicas scale with load (``autoscaling_config``).
- ``Ingress`` is the same FastAPI app as ``python -m ptuning serve`` (``serving.http``), over a backend that forwards
  each request to the replicas with ``multiplexed_model_id`` set to the adapter's name.

On one machine (a local Ray instance is started):

    python -m ptuning.serving.ray_serve --adapter movie=out/movie --port 8000

On a cluster: ``ray start --head`` on one node and ``ray start --address=HEAD:6379`` on the others, then, with the
adapters' directories reachable from every node (or Hub repo ids):

    RAY_ADDRESS=auto python -m ptuning.serving.ray_serve --adapter movie=user/movie-prompt --max-replicas 8
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys

from ray import serve
from starlette.concurrency import run_in_threadpool

from ..errors import PtuningError
from .engine import Engine, ServingConfig, server_precision
from .http import create_app, engine_models

REPLICA, INGRESS = "AdapterReplica", "Ingress"


@serve.deployment(name=REPLICA, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=256)
class AdapterReplica:
    """One engine; its adapters are Ray Serve's multiplexed models."""

    def __init__(self, config: dict, adapters: dict[str, str]):
        # Adapters load when a request first needs them on this replica: that is what multiplexing routes by.
        self.engine = Engine(ServingConfig(**config), adapters, preload=False)

    @serve.multiplexed(max_num_models_per_replica=1000)
    async def adapter(self, name: str):
        return await run_in_threadpool(self.engine.registry.get, name)

    async def classify(self, texts: list[str]) -> list[dict]:
        adapter = await self.adapter(serve.get_multiplexed_model_id())
        future = await run_in_threadpool(self.engine.submit, adapter, texts)
        return await asyncio.wrap_future(future)

    def models(self) -> list[dict]:
        return engine_models(self.engine)


class RayBackend:
    """``serving.http``'s backend over the replicas' handle, looked up by name in the running application."""

    def __init__(self, app_name: str):
        self.app_name = app_name
        self._handle = None

    @property
    def handle(self):
        # Not passed in: Ray pickles the FastAPI app apart from the deployment, so the app's copy of this object is
        # not the one Ingress.__init__ would see.
        if self._handle is None:
            self._handle = serve.get_deployment_handle(REPLICA, self.app_name)
        return self._handle

    async def classify(self, model: str, texts: list[str]) -> list[dict]:
        try:
            return await self.handle.options(multiplexed_model_id=model).classify.remote(texts)
        except PtuningError as error:  # Ray re-raises the replica's error as a subclass of it, traceback in str()
            cause = getattr(error, "cause", None)
            raise (cause if isinstance(cause, PtuningError) else error) from None

    async def models(self) -> list[dict]:
        return await self.handle.models.remote()

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        pass


def build_app(
    config: ServingConfig,
    adapters: dict[str, str],
    *,
    min_replicas: int = 1,
    max_replicas: int = 4,
    target_ongoing_requests: int = 32,
    name: str = "ptuning",
):
    """The Ray Serve application: ``serve.run(build_app(...), name=name)`` (the same ``name``)."""
    api = create_app(RayBackend(name), max_body_bytes=config.max_body_bytes)

    @serve.deployment(name=INGRESS, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
    @serve.ingress(api)
    class Ingress:
        def __init__(self, replicas):
            self.replicas = replicas  # bound so that serve.run deploys them; requests find them by name

    replicas = AdapterReplica.options(
        autoscaling_config={
            "min_replicas": min_replicas, "max_replicas": max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        },
    ).bind(dataclasses.asdict(config), dict(adapters))  # fmt: skip
    return Ingress.bind(replicas)


def main(argv: list[str] | None = None) -> int:
    """Start a local Ray instance (or join ``RAY_ADDRESS``) and serve until interrupted."""
    import ray

    from ..options import given_options
    from .options import add_serve_options
    from .server import parse_adapter_specs

    parser = argparse.ArgumentParser(prog="python -m ptuning.serving.ray_serve", description=__doc__.split("\n")[0])
    add_serve_options(parser, ServingConfig)
    parser.add_argument("--min-replicas", type=int, default=1, help="Replicas kept at the least load. Default: 1.")
    parser.add_argument("--max-replicas", type=int, default=4, help="Replicas at the most load. Default: 4.")
    a = parser.parse_args(argv)
    try:
        config = ServingConfig(**given_options(a, ServingConfig))
        adapters = parse_adapter_specs(a.adapter)
    except PtuningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    server_precision(config, os.environ)  # a local Ray's replicas inherit this process's environment
    ray.init()
    serve.start(http_options={"host": a.host, "port": a.port})
    serve.run(build_app(config, adapters, min_replicas=a.min_replicas, max_replicas=a.max_replicas),
              name="ptuning", blocking=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
