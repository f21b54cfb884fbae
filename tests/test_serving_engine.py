"""The serving engine in process: answers equal predict, batches mix adapters, limits, cache, queue, failures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ptuning import AdapterError, PromptClassifier
from ptuning.errors import ConfigError, NotFoundError, OverloadedError, RequestTooLargeError
from ptuning.serving import Engine, ServingConfig
from ptuning.serving import engine as engine_module

TEXTS = ["a gripping film", "dull and long", "what a waste of two hours of my life, honestly", "fine"]
def metric(engine: Engine, name: str) -> float:
    return engine.metrics.registry.get_sample_value(name) or 0.0


def reference(directory: str) -> list[dict]:
    return PromptClassifier.from_pretrained(directory).predict(TEXTS)


def assert_same(answers: list[dict], expected: list[dict]) -> None:
    assert len(answers) == len(expected)
    for got, want in zip(answers, expected):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert got["scores"].keys() == want["scores"].keys()
        for label, p in want["scores"].items():
            assert got["scores"][label] == pytest.approx(p, abs=1e-5)


def test_concurrent_requests_for_every_adapter_get_what_predict_gives(served):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base, max_wait_ms=20), dirs)
    futures: list = []
    lock = threading.Lock()

    def ask(name):
        future = engine.submit(name, TEXTS)
        with lock:
            futures.append((name, future))

    threads = [threading.Thread(target=ask, args=(name,)) for name in dirs for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, future in futures:
        assert_same(future.result(timeout=60), reference(dirs[name]))
    engine.close()


def test_requests_for_different_adapters_share_one_batch(served):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base, max_wait_ms=60_000, max_batch_size=4), dirs)
    first = engine.submit("deep", TEXTS[:2])
    second = engine.submit("prompt-middle", TEXTS[2:])  # fills the batch: it runs without waiting out the minute
    assert first.result(timeout=60) and second.result(timeout=60)
    assert metric(engine, "ptuning_batch_adapters_count") == 1  # one batch...
    assert metric(engine, "ptuning_batch_adapters_sum") == 2  # ...with both adapters in it
    engine.close()


def test_answers_carry_the_token_count(served):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base), {"deep": dirs["deep"]})
    answer = engine.classify("deep", ["fine"])[0]
    clf = PromptClassifier.from_pretrained(dirs["deep"])
    assert answer["num_tokens"] == len(clf.encode(["fine"]).examples[0].input_ids)
    engine.close()


def test_an_unknown_adapter_is_refused_by_name(served):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base), {"deep": dirs["deep"]})
    with pytest.raises(NotFoundError, match="'nope'"):
        engine.submit("nope", ["x"])
    engine.close()


def test_a_server_path_is_never_loaded_as_an_adapter_name(served):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base, allow_hub_load=True))
    with pytest.raises(NotFoundError):
        engine.submit(dirs["deep"], ["x"])  # exists on the server's disk: not a repo id, not registered
    engine.close()


def test_too_many_or_too_long_inputs_are_refused_before_tokenising(served):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base, max_inputs=3, max_input_chars=50), {"deep": dirs["deep"]})
    with pytest.raises(RequestTooLargeError, match="at most 3"):
        engine.submit("deep", ["x"] * 4)
    with pytest.raises(RequestTooLargeError, match="input 1 has 51 characters"):
        engine.submit("deep", ["ok", "y" * 51])
    with pytest.raises(ConfigError, match="at least one text"):
        engine.submit("deep", [])
    engine.close()


def test_an_adapter_for_another_base_model_is_refused_before_loading(served, tiny, tmp_path):
    base, _ = served
    other = PromptClassifier(tiny("roberta"), ["a", "b"]).save_pretrained(tmp_path / "roberta-adapter")
    with pytest.raises(AdapterError, match="trained on base model .*roberta.* serves .*bert"):
        Engine(ServingConfig(base_model=base), {"foreign": str(other)})


def test_the_cache_evicts_the_least_recently_used_adapter_and_reloads_it(served):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base, max_loaded=2), dirs, preload=False)
    engine.classify("deep", TEXTS)
    engine.classify("prompt-middle", TEXTS)
    engine.classify("deep", TEXTS)  # deep is now the most recently used
    engine.classify("regression", TEXTS)  # evicts prompt-middle
    assert engine.registry.is_loaded("deep") and not engine.registry.is_loaded("prompt-middle")
    loads = metric(engine, "ptuning_adapter_loads_total")
    assert_same(engine.classify("prompt-middle", TEXTS), reference(dirs["prompt-middle"]))
    assert metric(engine, "ptuning_adapter_loads_total") == loads + 1
    assert metric(engine, "ptuning_adapter_evictions_total") == 2
    assert metric(engine, "ptuning_adapters_loaded") == 2
    engine.close()


def test_a_full_queue_refuses_at_once_and_the_queued_requests_are_answered(served):
    base, dirs = served
    # A long wait and a large batch: the worker holds the first request, so the queue fills deterministically
    engine = Engine(ServingConfig(base_model=base, max_queue=3, max_wait_ms=60_000, max_batch_size=64), dirs)
    queued = engine.submit("deep", TEXTS[:3])
    with pytest.raises(OverloadedError, match="queue is full") as refused:
        engine.submit("prompt-middle", ["one more"])
    assert refused.value.retry_after > 0
    engine.close(drain=True)  # shutdown answers what is queued
    assert_same(queued.result(timeout=60), reference(dirs["deep"])[:3])
    with pytest.raises(OverloadedError, match="shutting down"):
        engine.submit("deep", ["late"])


def test_a_failing_batch_fails_its_own_requests_and_the_worker_carries_on(served, monkeypatch):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base), dirs)
    real = engine_module.logits_mixed
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("device fell over")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "logits_mixed", fail_once)
    with pytest.raises(RuntimeError, match="device fell over"):
        engine.classify("deep", TEXTS)
    assert_same(engine.classify("deep", TEXTS), reference(dirs["deep"]))
    assert metric(engine, "ptuning_batch_errors_total") == 1
    engine.close()


def test_adapter_objects_on_the_same_backbone_are_served_too(served, tiny):
    base, dirs = served
    engine = Engine(ServingConfig(base_model=base))
    clf = PromptClassifier.from_pretrained(dirs["ptuning-template"])
    assert_same(engine.classify(clf, TEXTS), clf.predict(TEXTS))
    foreign = PromptClassifier(tiny("roberta"), ["a", "b"])
    with pytest.raises(ConfigError, match="this engine serves"):
        engine.submit(foreign, TEXTS)
    engine.close()


def test_large_requests_are_cut_into_passes_of_the_batch_limits(served, monkeypatch):
    import ptuning.model

    base, dirs = served
    engine = Engine(ServingConfig(base_model=base, max_batch_size=2, max_batch_tokens=64), {"deep": dirs["deep"]})
    texts = TEXTS * 3
    reference = PromptClassifier.from_pretrained(dirs["deep"]).predict(texts)
    passes, whole = [], ptuning.model.forward_mixed

    def counted(adapters, rows, batch, *args, **kwargs):
        passes.append(tuple(batch["input_ids"].shape))  # (rows, padded length) of one backbone pass
        return whole(adapters, rows, batch, *args, **kwargs)

    monkeypatch.setattr(ptuning.model, "forward_mixed", counted)
    answers = engine.classify("deep", texts)
    assert_same(answers, reference)
    assert sum(rows for rows, _ in passes) == len(texts)  # every text in one pass, once
    assert all(rows <= 2 and (rows == 1 or rows * length <= 64) for rows, length in passes)
    assert len(passes) >= len(texts) / 2
    engine.close()


def test_adapters_named_by_repo_id_load_from_the_hub_without_the_operators_token(served, hub_server, monkeypatch):
    base, dirs = served
    files = {p.name: p.read_bytes() for p in Path(dirs["deep"]).iterdir()}
    hub_server.commit("test-user/public-prompt", files)
    hub_server.create_repo("test-user/private-prompt", private=True)
    hub_server.commit("test-user/private-prompt", files)
    monkeypatch.setenv("HF_TOKEN", hub_server.token)  # the operator is logged in and may read the private repo
    engine = Engine(ServingConfig(base_model=base, allow_hub_load=True, hub_endpoint=hub_server.endpoint))
    assert_same(engine.classify("test-user/public-prompt", TEXTS), reference(dirs["deep"]))
    with pytest.raises(NotFoundError, match="private-prompt"):
        engine.submit("test-user/private-prompt", TEXTS)  # a caller's choice never carries the operator's token
    engine.close()


def test_operator_adapters_from_the_hub_use_the_servers_token(served, hub_server, monkeypatch):
    base, dirs = served
    files = {p.name: p.read_bytes() for p in Path(dirs["deep"]).iterdir()}
    hub_server.create_repo("test-user/private-prompt", private=True)
    hub_server.commit("test-user/private-prompt", files)
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    engine = Engine(ServingConfig(base_model=base, hub_endpoint=hub_server.endpoint),
                    {"mine": "test-user/private-prompt"})  # fmt: skip
    assert_same(engine.classify("mine", TEXTS), reference(dirs["deep"]))
    engine.close()


def test_a_pool_batches_adapter_objects_per_backbone_and_cuts_long_lists(served, tiny):
    from ptuning.serving.pool import EnginePool

    base, dirs = served
    pool = EnginePool(ServingConfig(max_inputs=3))
    deep = PromptClassifier.from_pretrained(dirs["deep"])
    regression = PromptClassifier.from_pretrained(dirs["regression"])
    other = PromptClassifier(tiny("roberta"), ["a", "b"])
    texts = TEXTS * 2  # 8 texts: three requests of at most 3
    assert_same(pool.classify(deep, texts), deep.predict(texts))
    assert_same(pool.classify(regression, texts), regression.predict(texts))
    assert_same(pool.classify(other, texts), other.predict(texts))
    assert pool.engine_for(deep) is pool.engine_for(regression) is not pool.engine_for(other)
    assert metric(pool.engine_for(deep), "ptuning_texts_total") == 16
    pool.close()
