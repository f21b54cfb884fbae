"""`python -m ptuning serve` as a real process on loopback, spoken to over HTTP with httpx."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ptuning import PromptClassifier

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["a gripping film", "dull and long", "what a waste of two hours of my life, honestly", "fine"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``python -m ptuning serve`` process; ``url`` once /health answers."""

    def __init__(self, base: str, adapters: dict[str, str], *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        specs = [x for name, d in adapters.items() for x in ("--adapter", f"{name}={d}")]
        command = [sys.executable, "-m", "ptuning", "serve", "--model", base, "--port", str(self.port), *specs, *options]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.log = open(Path(base).parent / f"server-{self.port}.log", "w+")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not start: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def adapters(served):
    return served


@pytest.fixture(scope="module")
def server(adapters):
    base, dirs = adapters
    s = Server(base, dirs, "--max-inputs", "8", "--max-input-chars", "200", "--max-wait-ms", "10")
    yield s
    s.stop()


def expected(directory: str, texts: list[str]) -> list[dict]:
    return PromptClassifier.from_pretrained(directory).predict(texts)


def assert_matches(body: dict, name: str, answers: list[dict]) -> None:
    assert body["object"] == "list" and body["model"] == name and body["id"].startswith("classify-")
    assert [d["index"] for d in body["data"]] == list(range(len(answers)))
    for data, want in zip(body["data"], answers):
        if want["label"] is None:  # regression: the value, also as the one "probability"
            assert data["label"] is None and data["num_classes"] == 1
            assert data["value"] == pytest.approx(want["score"], abs=1e-5)
            assert data["probs"] == [pytest.approx(want["score"], abs=1e-5)]
        else:
            assert data["label"] == want["label"]
            assert data["num_classes"] == len(want["scores"])
            assert data["probs"] == pytest.approx(list(want["scores"].values()), abs=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_concurrent_requests_for_different_adapters_get_what_predict_gives(server, adapters):
    _, dirs = adapters
    jobs = [(name, TEXTS[i % 4 :] + TEXTS[: i % 4]) for i in range(6) for name in dirs]

    async def ask_all():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/classify", json={"model": name, "input": texts}) for name, texts in jobs)
            )

    responses = asyncio.run(ask_all())
    for (name, texts), response in zip(jobs, responses):
        assert response.status_code == 200, response.text
        assert_matches(response.json(), name, expected(dirs[name], texts))
    metrics = httpx.get(server.url + "/metrics").text
    assert "ptuning_batch_adapters_count" in metrics  # batched: the metric exists and counted batches
    sizes = [line for line in metrics.splitlines() if line.startswith("ptuning_batch_size_sum")]
    counts = [line for line in metrics.splitlines() if line.startswith("ptuning_batch_size_count")]
    assert float(sizes[0].split()[-1]) / float(counts[0].split()[-1]) > 4  # more than one request a batch


def test_one_text_as_a_string(server, adapters):
    _, dirs = adapters
    response = httpx.post(server.url + "/classify", json={"model": "deep", "input": "a gripping film"})
    assert response.status_code == 200
    assert_matches(response.json(), "deep", expected(dirs["deep"], ["a gripping film"]))


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"model": "nope", "input": "x"}, 404, "no adapter named 'nope'"),
        ({"model": "deep"}, 422, "input"),
        ({"model": "deep", "input": 3}, 422, "input"),
        ({"model": "deep", "input": []}, 400, "at least one text"),
        ({"model": "deep", "input": ["x"] * 9}, 413, "at most 8"),
        ({"model": "deep", "input": ["x" * 201]}, 413, "at most 200"),
    ],
)
def test_bad_requests_get_a_json_error_that_says_what_to_fix(server, body, status, words):
    response = httpx.post(server.url + "/classify", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status and words in error["message"]


def test_a_body_that_is_not_json_is_a_400(server):
    response = httpx.post(server.url + "/classify", content=b'{"model": "deep", "input": ',
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_a_body_over_the_size_limit_is_refused_before_it_is_read(server):
    huge = b'{"model": "deep", "input": "' + b"x" * 100_000 + b'"}'  # 8 texts x 200 characters fit in far less
    response = httpx.post(server.url + "/classify", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "at most" in response.json()["error"]["message"]
    assert 'ptuning_requests_total{status="413"}' in httpx.get(server.url + "/metrics").text


def test_models_lists_each_adapter_with_its_labels_method_and_base(server, adapters):
    base, dirs = adapters
    listed = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
    assert set(listed) == set(dirs)
    assert listed["deep"]["labels"] == ["neg", "pos"] and listed["deep"]["method"] == "deep"
    assert listed["prompt-middle"]["placement"] == "middle"
    assert listed["regression"]["task"] == "regression"
    assert all(m["parent"] == base and m["object"] == "model" and m["loaded"] for m in listed.values())


def test_health_docs_and_metrics(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert "/classify" in httpx.get(server.url + "/openapi.json").json()["paths"]
    assert httpx.get(server.url + "/docs").status_code == 200
    metrics = httpx.get(server.url + "/metrics").text
    for name in ("ptuning_requests_total", "ptuning_request_latency_seconds", "ptuning_queue_wait_seconds",
                 "ptuning_batch_size", "ptuning_adapters_loaded"):  # fmt: skip
        assert name in metrics


def test_a_full_queue_answers_503_with_retry_after_and_the_server_keeps_serving(adapters):
    base, dirs = adapters
    # The first request waits 3 s for company: the queue (2 texts) is full meanwhile
    server = Server(base, {"deep": dirs["deep"]}, "--max-queue", "2", "--max-wait-ms", "3000", "--max-batch-size", "64")
    try:

        async def scenario():
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                first = asyncio.create_task(client.post("/classify", json={"model": "deep", "input": TEXTS[:2]}))
                while "ptuning_queue_texts 2.0" not in (await client.get("/metrics")).text:
                    await asyncio.sleep(0.05)
                refused = await client.post("/classify", json={"model": "deep", "input": "one more"})
                return await first, refused, await client.post("/classify", json={"model": "deep", "input": "later"})

        first, refused, later = asyncio.run(scenario())
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["error"]["message"]
        assert first.status_code == 200 and later.status_code == 200
        assert_matches(first.json(), "deep", expected(dirs["deep"], TEXTS[:2]))
    finally:
        server.stop()


def test_shutdown_answers_the_requests_already_queued(adapters):
    base, dirs = adapters
    server = Server(base, {"deep": dirs["deep"]}, "--max-wait-ms", "2000", "--max-batch-size", "64")

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            pending = asyncio.create_task(client.post("/classify", json={"model": "deep", "input": TEXTS}))
            while "ptuning_queue_texts 4.0" not in (await client.get("/metrics")).text:
                await asyncio.sleep(0.05)
            server.process.send_signal(signal.SIGTERM)
            return await pending

    response = asyncio.run(scenario())
    assert response.status_code == 200
    assert_matches(response.json(), "deep", expected(dirs["deep"], TEXTS))
    server.process.wait(timeout=60)
    # uvicorn re-raises the signal once it has shut down gracefully: the code is -SIGTERM, the log says how it ended
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.output()
    server.stop()


def test_a_bad_adapter_stops_the_start_with_one_line(adapters, tmp_path):
    base, _ = adapters
    result = subprocess.run(
        [sys.executable, "-m", "ptuning", "serve", "--model", base, "--adapter", f"broken={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "adapter_config.json" in result.stderr
    assert "Traceback" not in result.stderr
