#!/usr/bin/env python
"""A second, independent measure of the server's throughput, to check ``serve_load.py`` against (issue 24).

    python bench/serve_client.py --adapter-from DIR              # 1 against 64 adapters at C = 32, 3 alternated rounds

Other code than ``serve_load.py`` on every side that could bias a count: the adapters are copies of one trained
adapter (``--adapter-from``, e.g. made by ``python -m ptuning train``), each copy's trainable weights nudged so that
every copy is its own; the client is another process, ``C`` threads with a blocking ``http.client`` keep-alive
connection each, every request to an adapter drawn at random and a random movie-review test sentence; the count is
the requests that end inside a fixed window after a warm-up, the client's CPU time beside it. Rounds alternate the
adapter counts (1, 64, 1, 64, ...), so a slow stretch of the machine falls on both.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, Clock, Run, log, median, movie_split, percentile, setup
from serve_load import add_server_options, start_server, stop_server


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adapter-from", help="a trained adapter directory to copy")
    p.add_argument("--adapters", type=int, nargs="+", default=[1, 64])
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup-seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    add_server_options(p)
    p.add_argument("--client", nargs=3, metavar=("URL", "K", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        return client(args.client[0], int(args.client[1]), int(args.client[2]), args)
    if not args.adapter_from:
        p.error("--adapter-from DIR is required (a trained adapter to copy)")
    setup(args)
    run = Run(args.name or "serve-client", args)
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ptuning-serve-client-") as tmp:
        dirs = nudged_copies(Path(args.adapter_from), Path(tmp), max(args.adapters), args.seed)
        server = start_server(dirs, args)
        try:
            for r in range(args.rounds):
                for k in args.adapters:
                    done = subprocess.run([sys.executable, __file__, "--client", server["url"], str(k), str(r),
                                           *_passed(args)], cwd=REPO / "bench", capture_output=True, text=True,
                                          check=True)  # fmt: skip
                    result = {"round": r + 1, **json.loads(done.stdout.strip().splitlines()[-1])}
                    rounds.append(result)
                    log(f"round {r + 1}, k={k}: {result['requests_per_s']:.1f} req/s, p50 {result['p50_ms']:.0f} ms, "
                        f"client CPU {result['client_cpu_s']:.1f} s")  # fmt: skip
        finally:
            stop_server(server)
    summary = {str(k): median([x["requests_per_s"] for x in rounds if x["adapters"] == k]) for k in args.adapters}
    run.write({"rounds": rounds, "median_requests_per_s": summary, "adapter_from": args.adapter_from})


def _passed(args) -> list[str]:
    return ["--concurrency", str(args.concurrency), "--seconds", str(args.seconds),
            "--warmup-seconds", str(args.warmup_seconds)]  # fmt: skip


def nudged_copies(source: Path, root: Path, n: int, seed: int) -> list[str]:
    """``n`` copies of the adapter at ``source``, every trainable tensor of copy i moved by 1 % noise (copy 0 kept)."""
    import torch

    from ptuning import PromptClassifier

    clf = PromptClassifier.from_pretrained(source, device="cpu")
    start = {k: v.detach().clone() for k, v in clf.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    dirs = []
    for i in range(n):
        with torch.no_grad():
            for name, tensor in clf.state_dict().items():
                noise = torch.randn(tensor.shape, generator=generator) * 0.01 * start[name].std().nan_to_num(0)
                tensor.copy_(start[name] + (noise if i else 0))
        dirs.append(str(clf.save_pretrained(root / f"a{i}")))
    log(f"{n} copies of {source}")
    return dirs


def client(url: str, k: int, seed: int, args) -> None:
    """The load, in this process: C threads, one blocking keep-alive connection each; prints one JSON line."""
    texts = movie_split().test_texts
    host, port = url.removeprefix("http://").split(":")
    for a in range(k):  # every adapter answers once before the clock starts
        _classify(http.client.HTTPConnection(host, int(port), timeout=120), f"a{a}", texts[a])
    begin = time.perf_counter()
    window = (begin + args.warmup_seconds, begin + args.warmup_seconds + args.seconds)
    latencies: list[float] = []
    failed = [0]
    lock = threading.Lock()

    def thread(j: int) -> None:
        rng = random.Random(seed * 1000 + j)
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        while time.perf_counter() < window[1]:
            start = time.perf_counter()
            status = _classify(connection, f"a{rng.randrange(k)}", rng.choice(texts))
            end = time.perf_counter()
            if window[0] <= end <= window[1]:
                with lock:
                    latencies.append(end - start)
                    failed[0] += status != 200
        connection.close()

    with Clock() as clock:
        threads = [threading.Thread(target=thread, args=(j,)) for j in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(json.dumps({
        "adapters": k, "concurrency": args.concurrency, "window_s": args.seconds, "answered": len(latencies),
        "failed": failed[0], "requests_per_s": len(latencies) / args.seconds,
        "p50_ms": 1e3 * median(latencies), "p99_ms": 1e3 * percentile(latencies, 99),
        "client_cpu_s": round(clock.cpu, 2), "client_wall_s": round(clock.wall, 2),
    }))  # fmt: skip


def _classify(connection: http.client.HTTPConnection, model: str, text: str) -> int:
    connection.request("POST", "/classify", body=json.dumps({"model": model, "input": text}),
                       headers={"Content-Type": "application/json"})  # fmt: skip
    response = connection.getresponse()
    response.read()
    return response.status


if __name__ == "__main__":
    main()
