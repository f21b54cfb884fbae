import logging

import pytest
import torch

from ptuning.backbones import PADDING_WARNING, load_backbone
from ptuning.model import PromptClassifier, forward_mixed, predict_mixed

def logits_of(clf, texts):
    with torch.no_grad():
        return clf(**clf.collate(clf.encode(texts).examples))


@pytest.mark.parametrize("placement", ["start", "middle", "end", "[P:1] {text} [P:2]"])
@pytest.mark.parametrize("pooling", ["model", "mean", "last"])
def test_padding_does_not_change_an_example_logits(tiny, family, placement, pooling, texts, make):
    clf = make(tiny(family), placement=placement, pooling=pooling)
    together = logits_of(clf, texts)
    for i, text in enumerate(texts):
        assert torch.allclose(together[i], logits_of(clf, [text])[0], atol=1e-5), (family, i)


def test_word_embeddings_are_looked_up_once_and_the_model_adds_positions(tiny, make):
    clf = make(tiny("bert"), method="prompt", pooling="model", placement="start")
    bb = clf.backbone
    ids = bb.tokenizer(["good film"], return_tensors="pt")
    words = bb.model.get_input_embeddings()(ids["input_ids"])
    embeds = torch.cat([clf.prompt_vectors()[None], words], 1)
    view = bb.with_head(clf.head)
    with torch.no_grad():
        expected = view(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long)).logits
    assert torch.allclose(logits_of(clf, ["good film"]), expected, atol=1e-6)


def test_only_prompt_and_head_are_trainable_and_backbone_stays_frozen(tiny, make):
    clf = make(tiny("bert"), method="p-tuning")
    clf.train()
    bb = clf.backbone
    assert not bb.model.training
    assert all(not p.requires_grad for p in bb.model.parameters())
    names = {n.split(".")[0] for n, p in clf.named_parameters() if p.requires_grad}
    assert names == {"prompt", "head"}


def test_head_can_be_frozen(tiny, make):
    clf = make(tiny("bert"), method="prompt", train_head=False)
    assert {n.split(".")[0] for n, p in clf.named_parameters() if p.requires_grad} == {"prompt"}


@pytest.mark.parametrize("method", ["prompt", "deep"])
@pytest.mark.parametrize("pooling", ["mean", "model"])
def test_an_adapter_without_prompt_vectors_is_a_head_on_the_frozen_backbone(tiny, pooling, method, texts, make):
    clf = make(tiny("bert"), num_virtual_tokens=0, pooling=pooling, method=method)
    bb = clf.backbone
    enc = bb.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        if pooling == "model":
            expected = bb.with_head(clf.head)(**enc).logits
        else:
            hidden = bb.model(**enc, output_hidden_states=True).hidden_states[-1]
            m = enc["attention_mask"][..., None].float()
            expected = clf.head((hidden * m).sum(1) / m.sum(1))
    assert torch.allclose(logits_of(clf, texts), expected, atol=1e-5)
    with_prompt = make(tiny("bert"), seed=1)
    mixed = predict_mixed([clf, with_prompt], texts * 2, [0, 1, 0, 1, 0, 1])
    alone = clf.predict(texts * 2)
    for i in (0, 2, 4):
        assert mixed[i]["scores"] == pytest.approx(alone[i]["scores"], abs=1e-5)


@pytest.mark.parametrize("method", ["prompt", "p-tuning", "deep"])
def test_gradients_reach_prompts_and_head_but_not_the_backbone(tiny, family, method, texts, make):
    clf = make(tiny(family), method=method, placement="middle")
    clf.train()
    logits = clf(**clf.collate(clf.encode(texts).examples))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    grads = {n: p.grad for n, p in clf.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    # (p-tuning's encoder starts with a zero output layer, so its inner layers get gradients from step 2 on)
    moving = [n for n, g in grads.items() if g.abs().sum() > 0]
    assert "prompt.embedding.weight" in moving and any(n.startswith("head.") for n in moving)
    assert method != "deep" or "deep.tables" in moving
    assert all(p.grad is None for p in clf.backbone.model.parameters())


def test_deep_prompts_change_every_layer_input_and_leave_other_adapters_alone(tiny, texts, make):
    path = tiny("bert")
    plain = make(path, pooling="mean")
    before = logits_of(plain, texts)
    deep = make(path, method="deep", pooling="mean")
    with_deep = logits_of(deep, texts)
    with torch.no_grad():
        deep.deep.tables.zero_()
    assert not torch.allclose(with_deep, logits_of(deep, texts))
    assert torch.equal(before, logits_of(plain, texts))


def test_regression_has_one_output(tiny, make):
    clf = make(tiny("bert"), labels=[], task="regression")
    out = clf.predict(["good film"])
    assert out[0]["label"] is None and isinstance(out[0]["score"], float)


def test_predict_returns_label_score_and_all_scores_in_input_order(tiny, texts, make):
    clf = make(tiny("bert"))
    out = clf.predict(texts)
    assert len(out) == 3
    for row, logits in zip(out, logits_of(clf, texts)):
        assert set(row["scores"]) == {"a", "b", "c"}
        assert abs(sum(row["scores"].values()) - 1) < 1e-5
        assert row["label"] == "abc"[int(logits.argmax())]
        assert row["score"] == max(row["scores"].values())


@pytest.mark.parametrize("fam", ["bert", "roberta", "gpt2", "distilbert"])
def test_mixed_adapter_batch_equals_each_adapter_alone(tiny, fam, make):
    path = tiny(fam)
    adapters = [
        make(path, placement="start", pooling="model", seed=1),
        make(path, placement="end", pooling="model", labels=["x", "y"], seed=2),  # stacked model heads
        make(path, placement="middle", method="deep", pooling="mean", seed=3),
        make(path, placement="[P:2] {text} [P:4]", method="p-tuning", pooling="mean", seed=4),
        make(path, labels=[], task="regression", pooling="last", seed=5),
    ]
    texts = [f"text number {i} " + "word " * (i % 4) for i in range(10)]
    which = [i % len(adapters) for i in range(10)]
    mixed = predict_mixed(adapters, texts, which, batch_size=16)
    for text, k, got in zip(texts, which, mixed):
        alone = adapters[k].predict([text])[0]
        assert got["label"] == alone["label"]
        assert got["score"] == pytest.approx(alone["score"], abs=1e-5)


def test_mixed_batch_is_one_backbone_pass(tiny, monkeypatch, make):
    path = tiny("bert")
    adapters = [make(path, seed=s, pooling=p) for s, p in [(1, "model"), (2, "mean"), (3, "model")]]
    calls = []
    layer0 = adapters[0].backbone.layers[0]
    handle = layer0.register_forward_hook(lambda *a: calls.append(1))
    try:
        batch = adapters[0].collate(adapters[0].encode(["a", "b", "c"]).examples)
        forward_mixed(adapters, torch.tensor([0, 1, 2]), batch)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_adapters_on_one_base_share_the_loaded_backbone(tiny, make):
    a, b = make(tiny("bert")), make(tiny("bert"), labels=["p", "q"])
    assert a.backbone is b.backbone is load_backbone(tiny("bert"))


def test_embedded_minilm_is_the_default_backbone():
    clf = PromptClassifier(labels=["negative", "positive"])
    assert clf.config.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert clf.backbone.hidden_size == 384 and clf.backbone.num_layers == 6
    out = clf.predict(["a gripping film"])[0]
    assert out["label"] in ("negative", "positive")


def test_text_init_starts_the_prompt_at_the_embeddings_of_the_text(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], init="text", init_text="classify this", num_virtual_tokens=4)
    bb = clf.backbone
    ids = bb.tokenizer("classify this", add_special_tokens=False)["input_ids"]
    words = bb.model.get_input_embeddings().weight
    expected = words[torch.tensor((ids * 4)[:4])]
    assert torch.equal(clf.prompt_vectors().detach(), expected)


def test_vocab_init_has_the_scale_of_real_word_embeddings(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], init="vocab", num_virtual_tokens=8)
    words = clf.backbone.model.get_input_embeddings().weight
    ratio = clf.prompt_vectors().detach().norm(dim=1).mean() / words.norm(dim=1).mean()
    assert 0.5 < ratio < 2


def label_pieces(clf, label: str) -> torch.Tensor:
    ids = clf.backbone.tokenizer(label, add_special_tokens=False)["input_ids"]
    return clf.backbone.model.get_input_embeddings().weight[torch.tensor(ids)]


@pytest.mark.parametrize("method", ["prompt", "p-tuning", "deep"])
def test_labels_init_starts_the_prompt_at_the_label_words(tiny, method):
    labels = ["negative", "thumbs up"]  # "thumbs up" is two word pieces: their mean
    clf = PromptClassifier(tiny("bert"), labels=labels, init="labels", num_virtual_tokens=4, method=method)

    start = clf.prompt_vectors().detach()
    assert torch.equal(start[0], label_pieces(clf, "negative")[0])
    assert torch.allclose(start[1], label_pieces(clf, "thumbs up").mean(0))
    assert not any(torch.allclose(start[i], start[j]) for i in (2, 3) for j in (0, 1))  # the rest: sampled words
    if method == "deep":
        assert all(torch.equal(table, start) for table in clf.deep.tables.detach())


def test_labels_init_averages_labels_when_they_outnumber_the_vectors(tiny):
    labels = ["red", "green", "blue"]
    clf = PromptClassifier(tiny("bert"), labels=labels, init="labels", num_virtual_tokens=2, method="prompt")
    red, green, blue = (label_pieces(clf, label)[0] for label in labels)
    assert torch.allclose(clf.prompt_vectors().detach(), torch.stack([(red + blue) / 2, green]))


@pytest.mark.parametrize("labels", [None, ["", "\u2603\u2603"]], ids=["regression", "no-word-pieces"])
def test_labels_init_falls_back_to_vocab_sampling(tiny, labels):
    options = dict(labels=labels, task="classification") if labels else dict(task="regression")
    torch.manual_seed(3)
    clf = PromptClassifier(tiny("bert"), init="labels", num_virtual_tokens=4, method="prompt", **options)
    torch.manual_seed(3)
    vocab = PromptClassifier(tiny("bert"), init="vocab", num_virtual_tokens=4, method="prompt", **options)
    assert torch.equal(clf.prompt_vectors(), vocab.prompt_vectors())


def test_decoders_drop_only_the_misleading_padding_warning(tiny):
    bb = load_backbone(tiny("gpt2"))
    logger = logging.getLogger(type(bb.model).forward.__module__)
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger.addHandler(handler)  # transformers' loggers do not propagate to the root, where caplog listens
    try:
        logger.warning(f"GPT2ForSequenceClassification {PADDING_WARNING}. Results may be unexpected")
        logger.warning("another warning")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["another warning"]


def test_a_huge_text_is_cut_before_the_tokenizer_reads_it(tiny, make):
    from ptuning.batching import MAX_CHARS_PER_TOKEN

    clf, seen = make(tiny("bert")), []
    tokenizer = clf.backbone.tokenizer
    real_call = type(tokenizer).__call__

    def spy(self, texts, *args, **kwargs):
        seen.extend(len(t) for t in texts)
        return real_call(self, texts, *args, **kwargs)

    huge = "word " * 1_000_000
    type(tokenizer).__call__ = spy
    try:
        long_one, short_one = clf.encode([huge, "word " * 30], max_length=40).examples
    finally:
        type(tokenizer).__call__ = real_call
    assert max(seen) <= (40 + 1) * MAX_CHARS_PER_TOKEN  # encode reads one token past the limit, to tell a cut
    assert long_one.truncated and len(long_one.input_ids) == 40
