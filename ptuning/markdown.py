r"""User text inside Markdown, shown as it is: the model card and the app both write Markdown around names, labels
and descriptions that users chose, and none of it may turn into markup, HTML, a table break, a list or a heading.

>>> print(md("*not bold* | <b>"), code_span("[P:4] {text}"))
\*not bold\* \| \<b\> `[P:4] {text}`
"""

from __future__ import annotations

import re
from typing import Any

_INLINE = re.compile(r"([\\`*_{}\[\]<>|~#!&])")  # CommonMark: a backslash makes any of these literal
_LIST_START = re.compile(r"^([-+=])")
_ORDERED_START = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")


def md(text: Any) -> str:
    """User text as one line of literal Markdown: no markup, no HTML, no table breaks, no list or heading."""
    one_line = _INLINE.sub(r"\\\1", " ".join(str(text).split()))
    one_line = _ORDERED_START.sub(r"\1\\\2", one_line)  # "1. x" would start a list: escape the dot, not the digit
    return _LIST_START.sub(r"\\\1", one_line)


def md_block(text: str) -> str:
    """User text as literal Markdown paragraphs (blank lines kept, everything else escaped)."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(md(p) for p in paragraphs if p.strip())


def code_span(text: Any) -> str:
    """User text as inline code (``x``): shown to the letter, since Markdown reads nothing inside a code span."""
    text = " ".join(str(text).split())
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(language: str, code: str) -> str:
    """A fenced code block whose fence no run of backticks in ``code`` can close."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
    return f"{fence}{language}\n{code}\n{fence}"


def table(header: tuple[str, str], rows: list[tuple[str, str]]) -> list[str]:
    """The lines of a two-column table, then a blank line; the cells must already be Markdown (see ``md``)."""
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    return lines + [f"| {a} | {b} |" for a, b in rows] + [""]
