"""Many users in one process: a slow model load holds up only that model's users."""

import threading

import pytest

from ptuning import backbones
from ptuning.backbones import load_backbone


def test_a_slow_load_blocks_only_the_callers_of_that_model(tiny, monkeypatch):
    real_load, started, release = backbones._load, threading.Event(), threading.Event()

    def slow_for_one(recorded, source, device):
        if source == "slow/model":
            started.set()
            assert release.wait(120)
            return "the slow model"
        return real_load(recorded, source, device)

    monkeypatch.setattr(backbones, "_load", slow_for_one)
    slow = threading.Thread(target=load_backbone, args=("slow/model", "cpu"), daemon=True)
    slow.start()
    assert started.wait(30)
    try:
        other = threading.Thread(target=load_backbone, args=(tiny("roberta"), "cpu"), daemon=True)
        other.start()
        other.join(15)
        assert not other.is_alive(), "another model's load waited for the slow download"
    finally:
        release.set()
        slow.join(30)
    backbones._cache.pop(("slow/model", "slow/model", "cpu"), None)


def test_concurrent_callers_of_one_model_load_it_once(tiny, monkeypatch):
    calls, real_load, gate = [], backbones._load, threading.Barrier(4, timeout=30)
    path = tiny("distilbert")
    for key in [k for k in backbones._cache if k[1] == path]:
        monkeypatch.delitem(backbones._cache, key)

    def counting(recorded, source, device):
        calls.append(source)
        return real_load(recorded, source, device)

    monkeypatch.setattr(backbones, "_load", counting)
    results = []

    def load():
        gate.wait()
        results.append(load_backbone(path, "cpu"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert calls == [path]
    assert len(results) == 4 and all(r is results[0] for r in results)


def test_a_failed_load_lets_the_next_caller_try_again(monkeypatch):
    with pytest.raises(backbones.ConfigError, match="neither a local directory nor a valid Hub repo id"):
        load_backbone("not a repo id", "cpu")
    assert not backbones._loading
