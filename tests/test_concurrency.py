"""Many users in one process: a slow model load holds up only that model's users, and trainings at once each give
the adapter their seed promises."""

import threading

import pytest
import torch

from ptuning import backbones
from ptuning.backbones import load_backbone
from ptuning.train import TrainingArguments, train
from tests.helpers import weights


def test_a_slow_load_blocks_only_the_callers_of_that_model(tiny, monkeypatch):
    real_load, started, release = backbones._load, threading.Event(), threading.Event()

    def slow_for_one(recorded, source, device, dtype):
        if source == "slow/model":
            started.set()
            assert release.wait(120)
            return "the slow model"
        return real_load(recorded, source, device, dtype)

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

    def counting(recorded, source, device, dtype):
        calls.append(source)
        return real_load(recorded, source, device, dtype)

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


# -- trainings at once ---------------------------------------------------------------------------------------
def run_alone_and_together(runs: list) -> tuple[list, list]:
    """Each ``run`` alone, then all at once in threads (beside one more that keeps drawing from the global
    generator); the adapters' weights both ways."""
    alone = [weights(run()) for run in runs]
    together, barrier, done = [None] * len(runs), threading.Barrier(len(runs) + 1, timeout=60), threading.Event()

    def work(i):
        barrier.wait()
        together[i] = weights(runs[i]())

    def noise():
        barrier.wait()
        while not done.is_set():
            torch.rand(8)
            torch.manual_seed(len(together))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(runs))]
    hammer = threading.Thread(target=noise, daemon=True)
    for t in [*threads, hammer]:
        t.start()
    for t in threads:
        t.join(300)
    done.set()
    return alone, together


def test_trainings_at_once_each_give_the_adapter_they_give_alone(tiny, sentiment, one_thread):
    args = dict(epochs=2, batch_size=8, val_split=0.25, patience=None)

    def run(family, seed, **config):
        config = {"base_model": tiny(family), "num_virtual_tokens": 3, **config}
        return lambda: train(sentiment(32, seed=seed), config=config, args=TrainingArguments(seed=seed, **args)).model

    runs = [
        run("bert", 1, method="deep", head_dropout=0.5),  # our head's dropout
        run("bert", 2, method="p-tuning", head_dropout=0.5, init="labels"),  # an encoder, a labels init
        run("roberta", 3, method="prompt", pooling="model"),  # RoBERTa's own head, with its dropout
    ]
    alone, together = run_alone_and_together(runs)
    for a, b in zip(alone, together):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

