"""Where the prompt goes: parse a placement, then lay out each example's token ids around prompt slots.

An assembled example is three equal-length lists: ``input_ids`` (a real token id, or the pad id at a prompt
position), ``prompt_slots`` (-1 for a real token, k for the k-th prompt vector) and ``token_type_ids``. The model
looks up word embeddings for real tokens, puts prompt vector k at slot k, and lets the backbone add position and
token-type embeddings once over the whole sequence.

Placements:
- ``start``: the prompt before everything, ``[CLS]`` included: PEFT's layout.
- ``middle``: in the middle of the example's real tokens (special tokens and padding do not count).
- ``end``: after the last real token, before the final special token (``[SEP]``, ``</s>``) if there is one.
- a template: text with ``{text}`` (required), ``{text_pair}`` (for pairs), prompt spans ``[P:n]`` (``[P]`` is
  ``[P:1]``) and any literal words, e.g. ``"[P:4] {text} [P:4]"``, ``"{text} [P:3] {text_pair}"`` or
  ``"Review: {text} [P:5] Sentiment:"``. The backbone's special tokens go around the whole template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError

KINDS = ("start", "middle", "end")
_TOKEN = re.compile(r"\[P(?::(\d+))?\]|\{(\w*)\}")


@dataclass(frozen=True)
class Span:
    kind: str  # "prompt" | "text" | "text_pair" | "literal"
    length: int = 0  # prompt spans: how many vectors
    literal: str = ""


@dataclass(frozen=True)
class Placement:
    kind: str  # "start" | "middle" | "end" | "template"
    num_prompt: int
    spans: tuple[Span, ...] = ()

    @property
    def uses_pair(self) -> bool:
        return any(s.kind == "text_pair" for s in self.spans)


def parse_placement(placement: str, num_virtual_tokens: int) -> Placement:
    """Parse ``start``/``middle``/``end`` or a template; a template's prompt spans set the prompt length.

    >>> parse_placement("[P:2] {text} [P]", 20).num_prompt
    3
    """
    text = (placement or "").strip()
    if text.lower() in KINDS:
        return Placement(text.lower(), num_virtual_tokens)
    if "{" not in text and "[" not in text:
        raise ConfigError(
            f"placement {placement!r} is not start, middle, end or a template like \"[P:4] {{text}} [P:4]\""
        )
    spans: list[Span] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        _add_literal(spans, text[pos : m.start()], placement)
        if m.group(2) is not None:
            if m.group(2) not in ("text", "text_pair"):
                raise ConfigError(
                    f"template {placement!r}: unknown field {{{m.group(2)}}}; use {{text}} and {{text_pair}}"
                )
            spans.append(Span(m.group(2)))
        else:
            n = int(m.group(1) or 1)
            if n < 1:
                raise ConfigError(f"template {placement!r}: a prompt span needs at least one vector, not [P:{n}]")
            spans.append(Span("prompt", length=n))
        pos = m.end()
    _add_literal(spans, text[pos:], placement)
    fields = [s.kind for s in spans if s.kind in ("text", "text_pair")]
    if fields.count("text") != 1 or fields.count("text_pair") > 1:
        raise ConfigError(f"template {placement!r} must hold {{text}} exactly once (and {{text_pair}} at most once)")
    n_prompt = sum(s.length for s in spans)
    if n_prompt == 0:
        raise ConfigError(f"template {placement!r} has no prompt span; add one such as [P:4]")
    return Placement("template", n_prompt, tuple(spans))


def _add_literal(spans: list[Span], chunk: str, placement: str) -> None:
    if re.search(r"[{}]|\[P\b", chunk):
        raise ConfigError(
            f"template {placement!r}: cannot read {chunk.strip()!r}; prompt spans are [P] or [P:n] with n a "
            "number, fields are {text} and {text_pair}"
        )
    if chunk.strip():
        spans.append(Span("literal", literal=chunk.strip()))


@dataclass(frozen=True)
class SpecialLayout:
    """The backbone tokenizer's special tokens around one text (prefix, suffix) and a pair (mid, pair suffix)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    mid: tuple[int, ...]
    pair_suffix: tuple[int, ...]
    pair_type: int  # token type of the second text of a pair
    pad_id: int


def special_layout(tokenizer) -> SpecialLayout:
    """Find the special tokens the tokenizer puts around a text and a pair, by tokenising a probe."""
    a = tokenizer("hello", add_special_tokens=False)["input_ids"]
    b = tokenizer("world", add_special_tokens=False)["input_ids"]
    one = tokenizer("hello", add_special_tokens=True)["input_ids"]
    i = _find(one, a)
    prefix, suffix = one[:i], one[i + len(a) :]
    pair = tokenizer("hello", "world", add_special_tokens=True, return_token_type_ids=True)
    ids, types = pair["input_ids"], pair.get("token_type_ids") or [0] * len(pair["input_ids"])
    j = _find(ids, b, start=len(prefix) + len(a))
    mid, pair_suffix = ids[len(prefix) + len(a) : j], ids[j + len(b) :]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return SpecialLayout(tuple(prefix), tuple(suffix), tuple(mid), tuple(pair_suffix), int(types[j]), int(pad))


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    raise ConfigError("cannot find how this tokenizer adds special tokens; it is not supported")


@dataclass
class Assembled:
    input_ids: list[int]
    prompt_slots: list[int]
    token_type_ids: list[int]
    truncated: bool


def assemble(
    placement: Placement,
    layout: SpecialLayout,
    text_ids: list[int],
    pair_ids: list[int] | None,
    max_length: int,
    literal_ids: dict[str, list[int]] | None = None,
) -> Assembled:
    """Lay out one example: special tokens, text (truncated to fit), prompt slots; see the module docstring.

    ``literal_ids`` maps each template literal to its token ids (tokenised once per placement).
    """
    literal_ids = literal_ids or {}
    if placement.kind == "template":
        if pair_ids is not None and not placement.uses_pair:
            raise ConfigError("the data has a second text column but the template has no {text_pair}")
        if pair_ids is None and placement.uses_pair:
            raise ConfigError("the template uses {text_pair} but the data has no second text column")
    fixed = _fixed_length(placement, layout, pair_ids is not None, literal_ids)
    text_ids, pair_ids, truncated = _truncate(text_ids, pair_ids, max_length - fixed)
    out = _Writer(layout.pad_id, Assembled([], [], [], truncated))
    if placement.kind == "template":
        _write_template(out, placement, layout, text_ids, pair_ids, literal_ids)
    else:
        _write_around_text(out, placement, layout, text_ids, pair_ids)
    return out.assembled


def _fixed_length(placement: Placement, layout: SpecialLayout, has_pair: bool, literal_ids: dict) -> int:
    """The positions an example takes besides its text: special tokens, prompt vectors, a template's literals."""
    if placement.kind == "template":
        literals = sum(len(literal_ids[s.literal]) for s in placement.spans if s.kind == "literal")
        return len(layout.prefix) + len(layout.suffix) + placement.num_prompt + literals
    ends = len(layout.mid) + len(layout.pair_suffix) if has_pair else len(layout.suffix)
    return len(layout.prefix) + placement.num_prompt + ends


class _Writer:
    """Appends tokens (``put``) and prompt slots (``prompt``, numbered in order) to an Assembled example."""

    def __init__(self, pad_id: int, assembled: Assembled):
        self.pad_id, self.assembled, self.next_slot = pad_id, assembled, 0

    def put(self, ids: list[int], typ: int) -> None:
        out = self.assembled
        out.input_ids.extend(ids)
        out.prompt_slots.extend([-1] * len(ids))
        out.token_type_ids.extend([typ] * len(ids))

    def prompt(self, n: int, typ: int) -> None:
        out = self.assembled
        out.input_ids.extend([self.pad_id] * n)
        out.prompt_slots.extend(range(self.next_slot, self.next_slot + n))
        out.token_type_ids.extend([typ] * n)
        self.next_slot += n


def _write_template(out: _Writer, placement, layout, text_ids, pair_ids, literal_ids) -> None:
    out.put(layout.prefix, 0)
    for s in placement.spans:
        if s.kind == "prompt":
            out.prompt(s.length, 0)
        elif s.kind == "literal":
            out.put(literal_ids[s.literal], 0)
        else:
            out.put(text_ids if s.kind == "text" else pair_ids, layout.pair_type if s.kind == "text_pair" else 0)
    out.put(layout.suffix, 0)


def _write_around_text(out: _Writer, placement, layout, text_ids, pair_ids) -> None:
    """start, middle or end: the prompt before the special tokens, amid the real tokens or before the last one."""
    n = placement.num_prompt
    if placement.kind == "start":
        out.prompt(n, 0)
    out.put(layout.prefix, 0)
    # middle: split the real tokens (text, then pair) at half their count
    split = (len(text_ids) + len(pair_ids or [])) // 2 if placement.kind == "middle" else -1
    in_text = 0 <= split <= len(text_ids)
    out.put(text_ids[:split] if in_text else text_ids, 0)
    if in_text:
        out.prompt(n, 0)
        out.put(text_ids[split:], 0)
    if pair_ids is None:
        suffix, last_type = layout.suffix, 0
    else:
        out.put(layout.mid, 0)
        k = split - len(text_ids)
        if split >= 0 and not in_text:
            out.put(pair_ids[:k], layout.pair_type)
            out.prompt(n, layout.pair_type)
            out.put(pair_ids[k:], layout.pair_type)
        else:
            out.put(pair_ids, layout.pair_type)
        suffix, last_type = layout.pair_suffix, layout.pair_type
    if placement.kind == "end":
        out.prompt(n, last_type)
    out.put(suffix, last_type)


def _truncate(a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None, bool]:
    """Longest-first truncation of a text (and its pair) to ``budget`` tokens in all."""
    if budget < 1:
        raise ConfigError(
            f"the prompt and special tokens leave no room for text (max length too small by {1 - budget}); "
            "shorten the prompt or raise --max-length"
        )
    if len(a) + len(b or []) <= budget:
        return a, b, False
    if b is None:
        return a[:budget], None, True
    la, lb = len(a), len(b)
    while la + lb > budget:
        if la >= lb:
            la -= 1
        else:
            lb -= 1
    return a[:la], b[:lb], True
