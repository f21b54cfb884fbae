#!/usr/bin/env python
"""Load on the HTTP server (``python -m ptuning serve``) against serving one request at a time, in one run.

    python bench/serve_load.py                                  # the table of BENCHMARKS.md (~12 min)
    python bench/serve_load.py --concurrency 1 8 --adapters 1 8 --seconds 3 --memory-adapters 50   # smoke

The server runs as its own process on loopback with the embedded MiniLM and 64 adapters of the default kind
(5 deep vectors, mean pooling, untrained: the compute is the same as a trained one's; ``--lora-rank R``: with rank-R
low-rank updates too, each adapter its own, as ``train()`` makes deep adapters now). A load generator (asyncio,
``C`` keep-alive HTTP/1.1 connections) sends single movie-review sentences, cycling through ``k`` adapters, for every
C x k: each connection first asks its share of the k adapters once, then the load runs ``--warmup-seconds`` before a
window of ``--seconds`` in which the requests that end are counted. The cells run in turn, ``--repeats`` rounds, and
each reports its median round. Side by side, in this process while the server idles (the backbone in the same
precision as the server's, ``PTUNING_PRECISION``; PEFT under CPU autocast when that is bf16):
- (a) ``PromptClassifier.predict`` one text at a time over the same k adapters (what the app did);
- (b) PEFT as a user would: one ``PeftModel`` holding k PROMPT_TUNING adapters (5 vectors), ``set_adapter`` per
  request, one at a time;
- the ceiling: the same texts through one in-process ``predict_mixed`` call, in batches of the server's mean batch
  size at that cell (no HTTP, no queue).
Then the resident memory of an engine before and after 1,000 adapters are loaded (a fresh process).

Client and server share the machine's cores: the client's CPU time is recorded with each cell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import LABELS, REPO, Clock, Run, backbone_path, log, median, movie_split, percentile, setup


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--adapters", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--seconds", type=float, default=15.0, help="measured time per cell run")
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="load before each measured window")
    p.add_argument("--repeats", type=int, default=3, help="runs of each cell; the median one is reported")
    p.add_argument("--baseline-requests", type=int, default=200, help="texts for (a), (b) and the ceiling")
    p.add_argument("--memory-adapters", type=int, default=1000)
    p.add_argument("--lora-rank", type=int, default=0, metavar="R",
                   help="adapters with rank-R low-rank updates too (the deep default of train() has 4)")
    add_server_options(p)
    p.add_argument("--memory-child", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        return memory_child(int(args.memory_child[0]), Path(args.memory_child[1]))
    setup(args)
    run = Run(args.name or "serve-load", args)
    texts = movie_split().test_texts
    most = max(args.adapters)
    with tempfile.TemporaryDirectory(prefix="ptuning-serve-bench-") as tmp:
        dirs = make_adapters(Path(tmp), max(most, args.memory_adapters), args.seed, args.lora_rank)
        results: dict = {"texts": "movie-polarity test sentences, one per request", "cells": []}
        server = start_server(dirs[:most], args)
        try:
            # every cell once, then every cell again: a slow stretch of the machine falls on all cells alike
            runs: dict = {}
            for _ in range(args.repeats):
                for k in args.adapters:
                    for c in args.concurrency:
                        runs.setdefault((k, c), []).append(load(server, texts, k, c, args))
            for (k, c), cell_runs in runs.items():
                # the median of --repeats runs: one disturbed run does not make the row
                cell = median_of(cell_runs)
                results["cells"].append(cell)
                log(f"k={k} C={c}: {cell['requests_per_s']:.1f} req/s, p50 {cell['p50_ms']:.1f} ms, "
                    f"p99 {cell['p99_ms']:.1f} ms, mean batch {cell['mean_batch_size']:.1f}")  # fmt: skip
        finally:
            stop_server(server)
        results["baselines"] = baselines(dirs, texts, results["cells"], args)
        results["memory"] = memory(args.memory_adapters, Path(tmp))
    results["targets"] = targets(results, args)
    run.write(results)


# --------------------------------------------------------------------------------------------- set-up
def make_adapters(root: Path, n: int, seed: int, lora_rank: int = 0) -> list[str]:
    import torch

    from ptuning import PromptClassifier

    torch.manual_seed(seed)
    first = PromptClassifier(labels=LABELS, lora_rank=lora_rank, device="cpu")
    dirs = []
    for i in range(n):  # the same kind of adapter, other vectors: enough for the compute and the memory
        with torch.no_grad():
            first.deep.tables.normal_(0, 0.05)
            first.prompt.embedding.weight.normal_(0, 0.05)
            for b in first.low_rank.b if first.low_rank is not None else []:
                b.normal_(0, 0.05)
        dirs.append(str(first.save_pretrained(root / f"a{i}")))
    log(f"{n} adapters saved")
    return dirs


def add_server_options(p: argparse.ArgumentParser) -> None:
    """The flags ``start_server`` reads, with those every serving benchmark shares (seed, threads, result name)."""
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--name", default=None)


def start_server(dirs: list[str], args, options: tuple[str, ...] = (), log_path: Path | None = None) -> dict:
    """``python -m ptuning serve`` on a free loopback port serving ``dirs`` as a0, a1, ... (more serve ``options``
    given), once it answers /health; its stderr to ``log_path`` when given. ``{process, url, host, port}``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    specs = [x for i, d in enumerate(dirs) for x in ("--adapter", f"a{i}={d}")]
    command = [sys.executable, "-m", "ptuning", "serve", "--port", str(port), "--max-queue", "100000",
               "--max-wait-ms", str(args.max_wait_ms), "--max-batch-size", str(args.max_batch_size), *options,
               *specs]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr = log_path.open("w") if log_path is not None else subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    import httpx

    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):  # registering thousands of adapters loads each once
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return {"process": process, "url": url, "host": "127.0.0.1", "port": port}
        except httpx.TransportError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    process.kill()
    why = f": {log_path.read_text()[-2000:]}" if log_path is not None else ""
    sys.exit(f"the server did not start{why}")


def stop_server(server: dict) -> None:
    server["process"].send_signal(signal.SIGTERM)
    server["process"].wait(timeout=60)


# --------------------------------------------------------------------------------------------- the load
def load(server: dict, texts: list[str], k: int, c: int, args) -> dict:
    import httpx

    def batches() -> tuple[float, float]:
        body = httpx.get(server["url"] + "/metrics").text
        grab = lambda name: float(re.search(rf"^{name} (\S+)$", body, re.M).group(1))  # noqa: E731
        return grab("ptuning_batch_size_sum"), grab("ptuning_batch_size_count")

    async def generate() -> tuple[list[float], int, float]:
        """Load for warmup + measured seconds; the latencies of the requests that ended inside the measured window."""
        latencies: list[float] = []
        errors = 0
        counter = 0
        host, port = server["url"].removeprefix("http://").split(":")

        async def worker(j: int):
            nonlocal counter, errors
            connection = await asyncio.open_connection(host, int(port))
            for a in range(j, k, c) if j < k else []:  # every adapter answers once before the clock starts
                await post(connection, {"model": f"a{a}", "input": texts[a]})
            await ready.wait()
            while time.perf_counter() < window[1]:
                i = counter
                counter += 1
                start = time.perf_counter()
                status = await post(connection, {"model": f"a{i % k}", "input": texts[i % len(texts)]})
                end = time.perf_counter()
                if window[0] <= end <= window[1]:
                    latencies.append(end - start)
                    errors += status != 200
            connection[1].close()

        ready = asyncio.Event()
        window = [0.0, 0.0]
        workers = [asyncio.create_task(worker(j)) for j in range(c)]
        await asyncio.sleep(0.5 + 0.02 * k)
        window[0] = time.perf_counter() + args.warmup_seconds
        window[1] = window[0] + args.seconds
        ready.set()
        await asyncio.gather(*workers)
        return latencies, errors, args.seconds

    sum0, count0 = batches()
    with Clock() as clock:
        latencies, errors, wall = asyncio.run(generate())
    sum1, count1 = batches()
    return {
        "adapters": k, "concurrency": c, "requests": len(latencies), "errors": errors, "wall_s": round(wall, 3),
        "requests_per_s": len(latencies) / wall, "p50_ms": 1e3 * median(latencies),
        "p99_ms": 1e3 * percentile(latencies, 99),
        "mean_batch_size": (sum1 - sum0) / max(count1 - count0, 1), "batches": count1 - count0,
        "client_cpu_s": round(clock.cpu, 2),
    }  # fmt: skip


async def post(connection, body: dict) -> int:
    """One keep-alive HTTP/1.1 POST /classify; the status. A few lines instead of a client library: on 2 shared
    cores httpx's own CPU time per request (~4 ms measured) would be taken from the server being measured."""
    reader, writer = connection
    data = json.dumps(body).encode()
    writer.write(b"POST /classify HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))  # fmt: skip
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


# --------------------------------------------------------------------------------------------- baselines
def baselines(dirs: list[str], texts: list[str], cells: list[dict], args) -> dict:
    from ptuning import PromptClassifier, predict_mixed

    n = args.baseline_requests
    sample = [texts[i % len(texts)] for i in range(n)]
    out: dict = {"texts": n, "one_at_a_time": {}, "peft_set_adapter": {}, "ceiling": {}}
    for k in args.adapters:
        adapters = [PromptClassifier.from_pretrained(d, device="cpu") for d in dirs[:k]]
        rows = [i % k for i in range(n)]
        adapters[0].predict(sample[:8])

        def one_at_a_time() -> dict:
            latencies = []
            with Clock() as clock:
                for t, r in zip(sample, rows):
                    start = time.perf_counter()
                    adapters[r].predict([t])
                    latencies.append(time.perf_counter() - start)
            return {"requests_per_s": n / clock.wall, "p50_ms": 1e3 * median(latencies)}

        def ceiling(size: int) -> dict:
            predict_mixed(adapters, sample[:size], rows[:size], batch_size=size)
            with Clock() as clock:
                predict_mixed(adapters, sample, rows, batch_size=size)
            return {"batch_size": size, "requests_per_s": n / clock.wall}

        out["one_at_a_time"][k] = median_run(one_at_a_time, args.repeats)
        out["peft_set_adapter"][k] = median_run(lambda: peft_one_at_a_time(sample, k, args), args.repeats)
        # the ceiling at each concurrency: the server's mean batch size there, in one in-process call
        out["ceiling"][k] = {}
        for cell in (x for x in cells if x["adapters"] == k):
            size = max(1, round(cell["mean_batch_size"]))
            out["ceiling"][k][cell["concurrency"]] = median_run(lambda: ceiling(size), args.repeats)
        full = args.max_batch_size
        walls = []
        for _ in range(3 * args.repeats):
            with Clock() as clock:
                predict_mixed(adapters, sample[:full], rows[:full], batch_size=full)
            walls.append(clock.wall)
        out["ceiling"][k]["full_batch_ms"] = 1e3 * median(walls)
        log(f"k={k}: one at a time {out['one_at_a_time'][k]['requests_per_s']:.1f} req/s, PEFT "
            f"{out['peft_set_adapter'][k]['requests_per_s']:.1f} req/s, full batch {out['ceiling'][k]['full_batch_ms']:.0f} ms")  # fmt: skip
    return out


def median_run(measure, repeats: int) -> dict:
    """The run with the median ``requests_per_s`` of ``repeats`` runs of ``measure``, with all their rates."""
    return median_of([measure() for _ in range(repeats)])


def median_of(runs: list[dict]) -> dict:
    """The run with the median ``requests_per_s``, with every run's rate (in the order they ran)."""
    ranked = sorted(runs, key=lambda r: r["requests_per_s"])
    return {**ranked[len(ranked) // 2], "repeats_requests_per_s": [r["requests_per_s"] for r in runs]}


def peft_one_at_a_time(sample: list[str], k: int, args) -> dict:
    import torch
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ptuning.backbones import embedded_path

    tok = AutoTokenizer.from_pretrained(embedded_path())
    base = AutoModelForSequenceClassification.from_pretrained(backbone_path(), num_labels=2)
    config = lambda: PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=5)  # noqa: E731
    model = get_peft_model(base, config(), adapter_name="a0")
    for i in range(1, k):
        model.add_adapter(f"a{i}", config())
    model.eval()
    from ptuning.backbones import precision_dtype

    bf16 = precision_dtype(torch.device("cpu")) == torch.bfloat16  # the precision ptuning's side runs in
    latencies = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), Clock() as clock:
        for i, t in enumerate(sample):
            start = time.perf_counter()
            model.set_adapter(f"a{i % k}")
            model(**tok([t], return_tensors="pt", truncation=True, max_length=256)).logits.softmax(-1)
            latencies.append(time.perf_counter() - start)
    return {"requests_per_s": len(sample) / clock.wall, "p50_ms": 1e3 * median(latencies)}


# --------------------------------------------------------------------------------------------- memory
def memory(n: int, root: Path) -> dict:
    """Resident memory of a fresh engine process before and after ``n`` adapters are loaded."""
    done = subprocess.run([sys.executable, __file__, "--memory-child", str(n), str(root)], capture_output=True,
                          text=True, cwd=REPO, check=True)  # fmt: skip
    before, after = (float(x) for x in done.stdout.split()[-2:])
    log(f"memory: {before:.0f} MiB -> {after:.0f} MiB with {n} adapters")
    return {"adapters": n, "rss_before_mb": before, "rss_after_mb": after, "added_mb": after - before}


def memory_child(n: int, root: Path) -> None:
    from ptuning.serving import Engine, ServingConfig

    engine = Engine(ServingConfig(max_loaded=max(n, 1)), {"a0": str(root / "a0")})
    engine.classify("a0", ["warm up the backbone and the allocator"] * 8)
    before = rss_mb()
    for i in range(n):
        engine.registry.register(f"a{i}", root / f"a{i}", preload=True)
    engine.classify("a1", ["after"] * 8)
    print(before, rss_mb())
    engine.close()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------------------------- targets
def targets(results: dict, args) -> dict:
    cells = {(c["adapters"], c["concurrency"]): c for c in results["cells"]}
    base = results["baselines"]
    out = {}
    if (8, 32) in cells:
        cell = cells[(8, 32)]
        ceiling = base["ceiling"][8][32]["requests_per_s"]
        out["c32_k8_of_ceiling"] = cell["requests_per_s"] / ceiling
        out["c32_k8_over_one_at_a_time"] = cell["requests_per_s"] / base["one_at_a_time"][8]["requests_per_s"]
        out["c32_k8_over_peft"] = cell["requests_per_s"] / base["peft_set_adapter"][8]["requests_per_s"]
        out["c32_k8_p99_over_full_batch"] = cell["p99_ms"] / base["ceiling"][8]["full_batch_ms"]
        if (1, 32) in cells:
            out["mixing_8_cost"] = 1 - cell["requests_per_s"] / cells[(1, 32)]["requests_per_s"]
    out["memory_added_mb"] = results["memory"]["added_mb"]
    return out


if __name__ == "__main__":
    main()
