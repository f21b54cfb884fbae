"""The Ray Serve deployment on a local Ray instance gives the answers of the single-process engine."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
import ray
import torch
from ray import serve

from ptuning import PromptClassifier
from ptuning.serving import Engine, ServingConfig
from ptuning.serving.ray_serve import build_app

PROXY_DEADLINE_S = 300  # after serve.run's own 60 s
TEXTS = ["a gripping film", "dull and long", "what a waste of two hours", "fine"]


@pytest.fixture(scope="module")
def deployment(tiny, tmp_path_factory):
    base = tiny("bert")
    root = tmp_path_factory.mktemp("ray-adapters")
    dirs = {}
    for i, (name, options) in enumerate({
        "deep": dict(labels=["neg", "pos"]),
        "ptuning": dict(labels=["x", "y", "z"], method="p-tuning", placement="middle"),
        "regression": dict(task="regression", method="prompt"),
    }.items()):  # fmt: skip
        torch.manual_seed(i)
        dirs[name] = str(PromptClassifier(base, **options).save_pretrained(root / name))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = ServingConfig(base_model=base, max_wait_ms=10)
        url = f"http://127.0.0.1:{port}"
        try:
            serve.run(build_app(config, dirs, min_replicas=1, max_replicas=2), name="ptuning")
        except TimeoutError:
            # serve.run gives the proxy a fixed 60 s (Ray's HTTP_PROXY_TIMEOUT, not configurable), which a loaded
            # 2-core machine can miss: wait for the deployment to answer instead, within a longer bound.
            _wait_until_listed(url, deadline_s=PROXY_DEADLINE_S)
        yield url, config, dirs
    finally:
        serve.shutdown()
        ray.shutdown()


def _wait_until_listed(url: str, deadline_s: float) -> None:
    """Poll ``/v1/models`` until it answers 200; fail the fixture after ``deadline_s`` seconds."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            if httpx.get(url + "/v1/models", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"Ray Serve did not answer on {url} within {deadline_s:.0f} s")
        time.sleep(1)


def test_ray_serve_answers_what_the_single_process_engine_answers(deployment):
    url, config, dirs = deployment
    jobs = [(name, TEXTS[i:] + TEXTS[:i]) for i in range(4) for name in dirs]

    async def ask_all():
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            return await asyncio.gather(
                *(client.post("/classify", json={"model": name, "input": texts}) for name, texts in jobs)
            )

    responses = asyncio.run(ask_all())
    engine = Engine(config, dirs)
    try:
        for (name, texts), response in zip(jobs, responses):
            assert response.status_code == 200, response.text
            for data, want in zip(response.json()["data"], engine.classify(name, texts)):
                assert data["label"] == want["label"]
                values = list(want["scores"].values()) if want["label"] is not None else [want["score"]]
                assert data["probs"] == pytest.approx(values, abs=1e-5)
    finally:
        engine.close()


def test_ray_serve_refuses_an_unknown_adapter_with_a_404(deployment):
    url, _, _ = deployment
    response = httpx.post(url + "/classify", json={"model": "nope", "input": "x"}, timeout=60)
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("no adapter named 'nope'")


def test_ray_serve_lists_the_adapters(deployment):
    url, _, dirs = deployment
    listed = httpx.get(url + "/v1/models", timeout=60).json()["data"]
    assert {m["id"] for m in listed} == set(dirs)
