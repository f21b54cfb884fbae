"""Reading a prompt (ptuning.interpret): the words nearest each vector, the far flag, the Markdown and the card."""

import pytest
import torch

from ptuning.interpret import FAR_COSINE, markdown_table, nearest_tokens, read_prompt
from ptuning.model import PromptClassifier
from ptuning.model_card import card_info, make_model_card

pytestmark = pytest.mark.usefixtures("one_thread")


def word_id(clf, word: str) -> int:
    (i,) = clf.backbone.tokenizer(word, add_special_tokens=False)["input_ids"]
    return i


def set_vector(clf, index: int, vector: torch.Tensor) -> None:
    with torch.no_grad():
        clf.prompt.embedding.weight[index] = vector


def words_of(clf) -> torch.Tensor:
    return clf.backbone.model.get_input_embeddings().weight.detach()


def test_a_vector_set_to_a_word_reads_back_as_that_word(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], method="prompt", num_virtual_tokens=3)
    set_vector(clf, 1, words_of(clf)[word_id(clf, "good")])

    reading = nearest_tokens(clf, k=4)

    assert [r.index for r in reading] == [0, 1, 2] and all(len(r.nearest) == 4 for r in reading)
    assert reading[1].nearest[0].token == "good"
    assert reading[1].nearest[0].cosine == pytest.approx(1.0, abs=1e-4)
    assert not reading[1].far
    cosines = [n.cosine for n in reading[1].nearest]
    assert cosines == sorted(cosines, reverse=True)


def test_special_tokens_are_never_read_as_words(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], method="prompt", num_virtual_tokens=1)
    set_vector(clf, 0, words_of(clf)[clf.backbone.tokenizer.cls_token_id])

    tokens = [n.token for n in nearest_tokens(clf, k=10)[0].nearest]
    assert not set(tokens) & set(clf.backbone.tokenizer.all_special_tokens)


def test_a_vector_far_from_every_word_is_flagged():
    # The embedded MiniLM: a tiny random backbone's 32-dim vocabulary has a word near every direction.
    clf = PromptClassifier(labels=["negative", "positive"], method="prompt", num_virtual_tokens=2, device="cpu")
    words = words_of(clf)
    set_vector(clf, 0, words[word_id(clf, "film")])
    set_vector(clf, 1, -words.mean(0))  # the words share a direction: its opposite is near none of them

    film, far = nearest_tokens(clf)
    assert not film.far and film.nearest[0].token == "film"
    assert far.far and far.nearest[0].cosine < FAR_COSINE


def test_p_tuning_reads_the_encoder_output(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], method="p-tuning", num_virtual_tokens=2)
    with torch.no_grad():  # the encoder's last layer starts at zero: make its output differ from its table
        clf.prompt.mlp_head[-1].bias.copy_(words_of(clf)[word_id(clf, "good")] - clf.prompt.embedding.weight[0])
    assert nearest_tokens(clf)[0].nearest[0].token == "good"


def test_a_deep_adapter_says_its_layer_tables_are_not_read(tiny):
    deep = PromptClassifier(tiny("bert"), labels=["a", "b"], method="deep", num_virtual_tokens=2)
    table = PromptClassifier(tiny("bert"), labels=["a", "b"], method="prompt", num_virtual_tokens=2)

    assert "not word embeddings" in read_prompt(deep)["note"] and "(1 in all)" in read_prompt(deep)["note"]
    assert read_prompt(table)["note"] is None
    assert "not word embeddings" in markdown_table(deep)


def test_the_note_names_low_rank_updates_and_offsets(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], method="prompt", num_virtual_tokens=2, lora_rank=2,
                           bias_offsets=True)  # fmt: skip
    note = read_prompt(clf)["note"]
    assert note.startswith("Only the input vectors are read.") and "rank-2 updates" in note and "biases" in note
    assert len(read_prompt(clf)["vectors"]) == 2  # the input vectors are read all the same


def test_markdown_shows_tokens_literally(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], method="prompt", num_virtual_tokens=1)
    set_vector(clf, 0, words_of(clf)[word_id(clf, "|")])

    text = markdown_table(clf, k=2)
    assert text.splitlines()[:2] == ["| vector | nearest words (cosine) |", "| --- | --- |"]
    assert text.splitlines()[2].startswith("| 0 | \\| 1.00, ")  # a table break escaped


def test_an_adapter_without_prompt_vectors_has_nothing_to_read(tiny):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], num_virtual_tokens=0)
    assert nearest_tokens(clf) == []
    assert "nothing to read" in markdown_table(clf)


def test_the_model_card_has_the_reading(tiny, tmp_path):
    clf = PromptClassifier(tiny("bert"), labels=["a", "b"], method="prompt", num_virtual_tokens=2)
    set_vector(clf, 0, words_of(clf)[word_id(clf, "good")])
    clf.save_pretrained(tmp_path)

    text = make_model_card(card_info(clf, tmp_path)).text
    section = text.split("## Reading the prompt")[1].split("## How to use")[0]
    assert "| 0 | good 1.00, " in section
    assert "## Reading the prompt" not in make_model_card({"base_model": "x"}).text
