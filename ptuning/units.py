"""Numbers as people read them in messages and model cards. Apart from ``data`` so that the adapter files, the Hub
side and the card format a size without importing the table reader (pandas, scikit-learn)."""

from __future__ import annotations


def human_size(n_bytes: int) -> str:
    """A size as people read it, in messages and model cards: bytes, or KiB, MiB or GiB with one decimal.

    Example:
        >>> human_size(512), human_size(1536), human_size(3 * 2**20)
        ('512 bytes', '1.5 KiB', '3.0 MiB')
    """
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"
