"""From texts to padded tensors: tokenise once, lay out prompts, pad per batch, group batches by length."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .placement import Assembled, Placement, SpecialLayout, assemble


@dataclass
class Encoded:
    """A dataset laid out for one placement: one ``Assembled`` per example."""

    examples: list[Assembled]
    num_truncated: int

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def lengths(self) -> list[int]:
        return [len(e.input_ids) for e in self.examples]


# A token spans a few characters, a long word piece a dozen: cutting a text at this many per token first keeps every
# token that can fit in any text of words, and a huge text costs no more to tokenise than one that just fills the
# limit (a fast tokenizer reads the whole text before it truncates).
MAX_CHARS_PER_TOKEN = 32


def tokenize(tokenizer, texts: list[str], limit: int) -> list[list[int]]:
    """Token ids without special tokens; anything past ``limit`` is dropped here already (it cannot fit)."""
    if not texts:
        return []
    chars = limit * MAX_CHARS_PER_TOKEN
    texts = [t[:chars] for t in texts]
    return tokenizer(texts, add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]


def encode(
    tokenizer,
    layout: SpecialLayout,
    placement: Placement,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
) -> Encoded:
    """Tokenise and lay out every example once; later epochs only pad and stack."""
    text_ids = tokenize(tokenizer, texts, max_length + 1)
    pair_ids = tokenize(tokenizer, pairs, max_length + 1) if pairs is not None else [None] * len(text_ids)
    literals = {s.literal for s in placement.spans if s.kind == "literal"}
    literal_ids = {lit: tokenize(tokenizer, [lit], max_length)[0] for lit in literals}
    examples = [assemble(placement, layout, a, b, max_length, literal_ids) for a, b in zip(text_ids, pair_ids)]
    return Encoded(examples, sum(e.truncated for e in examples))


def collate(examples: list[Assembled], pad_id: int, left_pad: bool) -> dict[str, torch.Tensor]:
    """Pad to the longest example of this batch (on the left for decoders, so the last position is real)."""
    width = max(len(e.input_ids) for e in examples)
    ids, slots, types, mask = [], [], [], []
    for e in examples:
        pad = width - len(e.input_ids)

        def padded(values: list[int], fill: int) -> list[int]:
            return [fill] * pad + values if left_pad else values + [fill] * pad

        ids.append(padded(e.input_ids, pad_id))
        slots.append(padded(e.prompt_slots, -1))
        types.append(padded(e.token_type_ids, 0))
        mask.append(padded([1] * len(e.input_ids), 0))
    return {
        "input_ids": torch.tensor(ids),
        "prompt_slots": torch.tensor(slots),
        "token_type_ids": torch.tensor(types),
        "attention_mask": torch.tensor(mask),
    }


def length_grouped_batches(
    lengths: list[int], batch_size: int, shuffle: bool = False, seed: int = 0
) -> list[list[int]]:
    """Batches of indices of similar length, so padding stays small.

    Without shuffling: sorted by length (inference). With shuffling: examples are shuffled, cut into chunks of
    50 batches, sorted by length within each chunk, and the batches are shuffled: close to the padding of a full
    sort while keeping the order random from epoch to epoch (as in Hugging Face's ``group_by_length``).
    """
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed)
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches
