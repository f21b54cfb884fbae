"""The engine under churn (issue 24's short soak): many more adapters than it may hold, asked for by several callers
at once for a while, so they are evicted and loaded again all the time. No request fails, every answer is the
adapter's own, and resident memory does not grow with the loads."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import torch

from ptuning import PromptClassifier
from ptuning.serving import Engine, ServingConfig

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = (
    dict(method="deep"),
    dict(method="prompt", placement="middle"),
    dict(method="deep", start_layer=1, bias_offsets=True),
    dict(method="p-tuning", placement="[P:2] {text} [P:1]"),
    dict(method="deep", start_layer=1, lora_rank=2),
)
TEXTS = ["a gripping film", "dull and long", "what a waste of two hours", "fine", "not bad at all, really"]


def resident_mb() -> float:
    """This process's resident memory now (not its peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def many(tiny, tmp_path_factory):
    """``(base, {name: directory}, {name: expected answers on TEXTS})``: 200 adapters of five kinds, each different."""
    base, root = tiny("bert"), tmp_path_factory.mktemp("soak")
    dirs, expected = {}, {}
    for i in range(200):
        torch.manual_seed(i)
        clf = PromptClassifier(base, labels=["neg", "pos"], **KINDS[i % len(KINDS)])
        with torch.no_grad():
            for p in clf.parameters():
                p.add_(torch.randn_like(p) * 0.3)  # its own answers, not another copy's
        name = f"a{i:03d}"
        dirs[name] = str(clf.save_pretrained(root / name))
        expected[name] = clf.predict(TEXTS)
    return base, dirs, expected


def test_churn_over_many_adapters_fails_nothing_answers_right_and_holds_memory(many):
    base, dirs, expected = many
    engine = Engine(ServingConfig(base_model=base, max_loaded=20, max_queue=10_000), dirs, preload=False)
    names, failures, wrong, answered = sorted(dirs), [], [], [0]
    lock = threading.Lock()

    def caller(seed: int, until: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < until:
            name = rng.choice(names)
            try:
                got = engine.classify(name, TEXTS)
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                with lock:
                    failures.append(f"{name}: {error!r}")
                continue
            ok = all(g["label"] == w["label"] and abs(g["score"] - w["score"]) < 1e-5
                     for g, w in zip(got, expected[name]))  # fmt: skip
            with lock:
                answered[0] += 1
                if not ok:
                    wrong.append(name)

    def churn(seconds: float) -> None:
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=caller, args=(s, until)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    churn(5)  # warm: allocators and caches reach their working size
    before, warm_answers = resident_mb(), answered[0]
    churn(20)
    after = resident_mb()
    loads = engine.metrics.registry.get_sample_value("ptuning_adapter_loads_total")
    evictions = engine.metrics.registry.get_sample_value("ptuning_adapter_evictions_total")
    engine.close()

    assert failures == [] and wrong == []
    assert answered[0] - warm_answers > 100  # the churn did run
    assert evictions > 100 and loads > evictions  # far more loads than the engine holds: every load after the 20th
    # evicts one; a leak of even 20 KB a load would show as tens of MB here
    assert after - before < 30, f"resident memory grew {after - before:.1f} MB over {loads:.0f} loads"
