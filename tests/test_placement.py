import pytest
from transformers import AutoTokenizer

from ptuning.backbones import embedded_path
from ptuning.batching import collate, encode, length_grouped_batches
from ptuning.errors import ConfigError
from ptuning.placement import parse_placement, special_layout


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(embedded_path())


def layout_of(tok, placement, text, pair=None, n=3, max_length=64):
    p = parse_placement(placement, n)
    e = encode(tok, special_layout(tok), p, [text], [pair] if pair is not None else None, max_length).examples[0]
    tokens = ["P%d" % s if s >= 0 else t for t, s in zip(tok.convert_ids_to_tokens(e.input_ids), e.prompt_slots)]
    return tokens, e


def test_start_puts_prompt_before_cls(tok):
    tokens, e = layout_of(tok, "start", "good film")
    assert tokens == ["P0", "P1", "P2", "[CLS]", "good", "film", "[SEP]"]
    assert e.token_type_ids == [0] * 7


def test_end_puts_prompt_before_final_special_token(tok):
    tokens, _ = layout_of(tok, "end", "good film")
    assert tokens == ["[CLS]", "good", "film", "P0", "P1", "P2", "[SEP]"]


def test_middle_splits_the_real_tokens_in_half(tok):
    tokens, _ = layout_of(tok, "middle", "a very good film")
    assert tokens == ["[CLS]", "a", "very", "P0", "P1", "P2", "good", "film", "[SEP]"]


def test_end_with_a_pair_uses_the_second_segment_token_type(tok):
    tokens, e = layout_of(tok, "end", "good film", pair="yes")
    assert tokens == ["[CLS]", "good", "film", "[SEP]", "yes", "P0", "P1", "P2", "[SEP]"]
    assert e.token_type_ids == [0, 0, 0, 0, 1, 1, 1, 1, 1]


def test_template_places_several_spans_and_literals(tok):
    tokens, _ = layout_of(tok, "Review: {text} [P:2] Sentiment: [P]", "good film")
    assert tokens == ["[CLS]", "review", ":", "good", "film", "P0", "P1", "sentiment", ":", "P2", "[SEP]"]


def test_template_prompt_spans_set_the_prompt_length():
    assert parse_placement("[P:4] {text} [P:4]", 20).num_prompt == 8
    assert parse_placement("middle", 20).num_prompt == 20


def test_pair_template_types_the_second_text(tok):
    tokens, e = layout_of(tok, "{text} [P:2] {text_pair}", "good", pair="film")
    assert tokens == ["[CLS]", "good", "P0", "P1", "film", "[SEP]"]
    assert e.token_type_ids[4] == 1


@pytest.mark.parametrize(
    "template, complaint",
    [
        ("{txt} [P:2]", "unknown field {txt}"),
        ("[P:2] only prompts", "{text} exactly once"),
        ("{text} [P:0]", "at least one vector"),
        ("{text} [P:x]", "cannot read"),
        ("{text} {text}", "{text} exactly once"),
        ("{text} and nothing else", "no prompt span"),
        ("sideways", "not start, middle, end or a template"),
        ("{text} [P:2", "cannot read"),
    ],
)
def test_malformed_template_is_refused_with_a_clear_message(template, complaint):
    with pytest.raises(ConfigError, match=None) as err:
        parse_placement(template, 4)
    assert complaint in str(err.value)


def test_template_without_text_pair_refuses_pair_data(tok):
    with pytest.raises(ConfigError, match="text_pair"):
        layout_of(tok, "{text} [P:2]", "a", pair="b")


def test_text_is_truncated_so_text_and_prompt_fit(tok):
    tokens, e = layout_of(tok, "middle", "word " * 100, n=5, max_length=32)
    assert len(e.input_ids) == 32 and e.truncated
    assert e.prompt_slots.count(-1) == 27 and tokens[-1] == "[SEP]"


def test_pairs_are_truncated_longest_first(tok):
    _, e = layout_of(tok, "start", "word " * 50, pair="short pair", n=2, max_length=20)
    assert len(e.input_ids) == 20
    assert e.token_type_ids.count(1) == 3  # "short pair" and its [SEP] kept whole


def test_max_length_too_small_for_the_prompt_is_a_clear_error(tok):
    with pytest.raises(ConfigError, match="no room for text"):
        layout_of(tok, "start", "good", n=30, max_length=16)


def test_collate_pads_on_the_requested_side(tok):
    p = parse_placement("start", 1)
    enc = encode(tok, special_layout(tok), p, ["a", "a b c"], None, 32)
    right = collate(enc.examples, 0, left_pad=False)
    left = collate(enc.examples, 0, left_pad=True)
    assert right["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0]
    assert left["attention_mask"][0].tolist() == [0, 0, 1, 1, 1, 1]
    assert left["prompt_slots"][0].tolist() == [-1, -1, 0, -1, -1, -1]


def test_length_grouped_batches_cover_every_example_once_and_keep_lengths_close():
    lengths = [i % 37 for i in range(1000)]
    batches = length_grouped_batches(lengths, 32, shuffle=True, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.2 * sum(lengths) + 32 * len(batches)
    assert batches != length_grouped_batches(lengths, 32, shuffle=True, seed=2)
