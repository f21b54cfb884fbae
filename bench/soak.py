#!/usr/bin/env python
"""The HTTP server over a long run: steady mixed load over many more adapters than it may hold (issue 24).

    python bench/soak.py                                   # BENCHMARKS.md: 2,000 adapters, --max-loaded 100, 30 min
    python bench/soak.py --adapters 300 --minutes 2 --name soak-smoke

The server is ``python -m ptuning serve`` in its own process (the embedded MiniLM, ``--max-loaded``), serving
``--adapters`` adapters of every kind the library has, in turn: deep (the default shape), a deep adapter from layer 2
with bias offsets, a prompt table in the middle of the text, and p-tuning in a template. Each adapter's weights are its
own (random around a trained scale), so answers can be told apart. A load generator (asyncio, ``C`` keep-alive
connections, raw HTTP/1.1 like ``serve_load.py``) sends one movie-review sentence per request: ``--hot`` of the
requests go to the first ``--hot-adapters`` adapters (what a popular few get) and the rest to any adapter at random,
so the server evicts and loads adapters all the time. Every minute it records the requests answered and failed, the
throughput, p50 / p99 latency, the server's resident memory (``/proc/PID/status``) and the loads and evictions of its
``/metrics``. At the end, 24 adapters' answers through the server (after all that churn) are compared with the same
files loaded in this process. The result file gets the targets of issue 24; ``--plot`` draws the minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import tempfile
import time
from pathlib import Path

from common import LABELS, Clock, Run, log, median, movie_split, percentile, setup
from serve_load import add_server_options, post, start_server, stop_server

KINDS = (
    dict(method="deep"),
    dict(method="deep", start_layer=2, bias_offsets=True),
    dict(method="prompt", placement="middle"),
    dict(method="p-tuning", placement="[P:4] {text} [P:4]"),
)
PARITY_TOLERANCE = 0.03  # bf16 passes of differently composed batches agree to about 1e-2 in probability


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adapters", type=int, default=2000)
    p.add_argument("--max-loaded", type=int, default=100)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--hot", type=float, default=0.8, help="share of requests that go to the hot adapters")
    p.add_argument("--hot-adapters", type=int, default=50)
    add_server_options(p)
    p.add_argument("--plot", action="store_true", help="also draw bench/results/NAME.png")
    args = p.parse_args()
    setup(args)
    run = Run(args.name or "soak", args)
    texts = movie_split().test_texts
    with tempfile.TemporaryDirectory() as tmp:
        with Clock() as made:
            dirs = make_adapters(Path(tmp), args.adapters, args.seed)
        log(f"{len(dirs)} adapters saved in {made.wall:.0f} s")
        server = start_server(dirs, args, ("--max-loaded", str(args.max_loaded)), Path(tmp) / "server.log")
        try:
            minutes = asyncio.run(soak(server, texts, args))
            parity = check_parity(server, dirs, texts, args)
        finally:
            stop_server(server)
    result = {"minutes": minutes, "parity": parity, "targets": targets(minutes, parity), "kinds": KINDS}
    path = run.write(result)
    if args.plot:
        plot(result, path.with_suffix(".png"), args)


# --------------------------------------------------------------------------------------------- the adapters
def make_adapters(root: Path, n: int, seed: int) -> list[str]:
    """``n`` adapters of KINDS in turn, each with its own random weights at a trained adapter's scale."""
    import torch

    from ptuning import PromptClassifier

    torch.manual_seed(seed)
    templates = [PromptClassifier(labels=LABELS, device="cpu", **kind) for kind in KINDS]
    starts = [{k: v.detach().clone() for k, v in t.state_dict().items()} for t in templates]
    dirs = []
    for i in range(n):
        clf, start = templates[i % len(KINDS)], starts[i % len(KINDS)]
        with torch.no_grad():
            for name, tensor in clf.state_dict().items():
                tensor.copy_(start[name] + 0.05 * torch.randn_like(tensor))
        dirs.append(str(clf.save_pretrained(root / f"a{i}")))
    return dirs


# --------------------------------------------------------------------------------------------- the server
def server_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def server_counts(url: str) -> dict:
    import httpx

    body = httpx.get(url + "/metrics", timeout=30).text

    def grab(name: str) -> float:
        found = re.search(rf"^{name} (\S+)$", body, re.M)
        return float(found.group(1)) if found else 0.0

    return {"loads": grab("ptuning_adapter_loads_total"), "evictions": grab("ptuning_adapter_evictions_total"),
            "loaded": grab("ptuning_adapters_loaded")}  # fmt: skip


# --------------------------------------------------------------------------------------------- the load
async def soak(server: dict, texts: list[str], args) -> list[dict]:
    """Run the load for ``args.minutes``; one record a minute."""
    rng = random.Random(args.seed)
    current: dict = {"latencies": [], "failed": 0}
    stop = asyncio.Event()

    def adapter() -> str:
        if rng.random() < args.hot:
            return f"a{rng.randrange(min(args.hot_adapters, args.adapters))}"
        return f"a{rng.randrange(args.adapters)}"

    async def worker() -> None:
        connection = await asyncio.open_connection(server["host"], server["port"])
        while not stop.is_set():
            body = {"model": adapter(), "input": texts[rng.randrange(len(texts))]}
            start = time.perf_counter()
            try:
                status = await post(connection, body)
            except (OSError, asyncio.IncompleteReadError) as error:
                current["failed"] += 1
                log(f"request failed: {error!r}; reconnecting")
                connection = await asyncio.open_connection(server["host"], server["port"])
                continue
            if status == 200:
                current["latencies"].append(time.perf_counter() - start)
            else:
                current["failed"] += 1
        connection[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    minutes, began = [], time.perf_counter()
    counts = server_counts(server["url"])
    for minute in range(1, math.ceil(args.minutes) + 1):
        seconds = min(60.0, args.minutes * 60 - (minute - 1) * 60)
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        latencies, failed = current["latencies"], current["failed"]
        current["latencies"], current["failed"] = [], 0
        wall = time.perf_counter() - started
        now = await asyncio.to_thread(server_counts, server["url"])
        record = {
            "minute": minute, "elapsed_s": round(time.perf_counter() - began, 1), "answered": len(latencies),
            "failed": failed, "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(1e3 * median(latencies), 1) if latencies else None,
            "p99_ms": round(1e3 * percentile(latencies, 99), 1) if latencies else None,
            "server_rss_mb": round(server_rss_mb(server["process"].pid), 1),
            "loads": int(now["loads"] - counts["loads"]), "evictions": int(now["evictions"] - counts["evictions"]),
            "loaded": int(now["loaded"]),
        }  # fmt: skip
        counts = now
        minutes.append(record)
        log(json.dumps(record))
    stop.set()
    await asyncio.gather(*workers)
    return minutes


# --------------------------------------------------------------------------------------------- the checks
def check_parity(server: dict, dirs: list[str], texts: list[str], args) -> dict:
    """The server's answers for 24 adapters (hot and cold, every kind) against the same files loaded here."""
    import httpx

    from ptuning import PromptClassifier

    picked = sorted({*range(0, 12), *random.Random(args.seed + 1).sample(range(args.adapters), 12)})
    sample = texts[:8]
    worst, mismatched = 0.0, []
    with httpx.Client(timeout=120) as client:
        for i in picked:
            got = client.post(server["url"] + "/classify", json={"model": f"a{i}", "input": sample}).json()["data"]
            want = PromptClassifier.from_pretrained(dirs[i], device="cpu").predict(sample)
            for g, w in zip(got, want):
                gap = max(abs(a - b) for a, b in zip(g["probs"], w["scores"].values()))
                worst = max(worst, gap)
                if gap > PARITY_TOLERANCE:
                    mismatched.append({"adapter": f"a{i}", "gap": round(gap, 4)})
    return {"adapters": len(picked), "texts": len(sample), "worst_probability_gap": round(worst, 5),
            "tolerance": PARITY_TOLERANCE, "mismatched": mismatched}  # fmt: skip


def targets(minutes: list[dict], parity: dict) -> dict:
    """Issue 24's soak targets: no failed request; resident memory at the end within 5 % of minute 5's; p99 of the
    last 5 minutes within 20 % of the first 5 (the median of the per-minute p99s); answers equal after the churn."""
    failed = sum(m["failed"] for m in minutes)
    out = {"failed_requests": failed, "no_failed_request": failed == 0, "parity": not parity["mismatched"]}
    if len(minutes) >= 10:
        rss5, rss_end = minutes[4]["server_rss_mb"], minutes[-1]["server_rss_mb"]
        first, last = median([m["p99_ms"] for m in minutes[:5]]), median([m["p99_ms"] for m in minutes[-5:]])
        out.update({
            "rss_minute_5_mb": rss5, "rss_end_mb": rss_end, "rss_growth": round(rss_end / rss5 - 1, 4),
            "rss_within_5_percent": abs(rss_end / rss5 - 1) <= 0.05,
            "p99_first_5_ms": first, "p99_last_5_ms": last, "p99_change": round(last / first - 1, 4),
            "p99_within_20_percent": abs(last / first - 1) <= 0.20,
        })  # fmt: skip
    return out


def plot(result: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result["minutes"]
    x = [r["minute"] for r in m]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    axes[0].plot(x, [r["requests_per_s"] for r in m], marker=".")
    axes[0].set_ylabel("requests / s")
    axes[1].plot(x, [r["p50_ms"] for r in m], marker=".", label="p50")
    axes[1].plot(x, [r["p99_ms"] for r in m], marker=".", label="p99")
    axes[1].set_ylabel("latency, ms")
    axes[1].legend()
    axes[2].plot(x, [r["server_rss_mb"] for r in m], marker=".")
    axes[2].set_ylabel("server resident MiB")
    axes[3].plot(x, [r["loads"] for r in m], marker=".", label="loads")
    axes[3].plot(x, [r["evictions"] for r in m], marker=".", label="evictions")
    axes[3].plot(x, [r["failed"] for r in m], marker=".", label="failed requests")
    axes[3].set_ylabel("per minute")
    axes[3].set_xlabel("minute")
    axes[3].legend()
    fig.suptitle(f"ptuning serve: {args.adapters} adapters, --max-loaded {args.max_loaded}, C = {args.concurrency}, "
                 f"{args.hot:.0%} of requests to {args.hot_adapters} hot adapters")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    log(f"plot: {path}")


if __name__ == "__main__":
    main()
