"""Reading a prompt: the vocabulary words nearest each input prompt vector, by cosine similarity.

    nearest_tokens(clf, k=5)    # [VectorReading(index=0, nearest=[Neighbour("great", 0.61), ...], far=False), ...]
    markdown_table(clf)         # the same as Markdown (the app; the model card has it too)

A trained prompt is no sentence: its vectors move between words (Lester et al. 2021 read the nearest neighbours of
trained prompt tokens as loose semantic clusters, often around the label words), so a reading hints at what a vector
stands near, not at a text it means. Only vectors in word space can be read: the input prompt (for p-tuning, the
encoder's output). A deep adapter's per-layer tables replace hidden states inside the backbone, which are not word
embeddings, so they have no reading.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .markdown import md, table

# A vector is "far from every word" when its nearest word's cosine is below this. Measured on the embedded
# all-MiniLM-L6-v2 (30,522 word pieces, 384 dims; 3,000 pieces and 2,000 random vectors): a real word piece's nearest
# other piece has a cosine of 0.55 at the median and 0.29 at the 2nd percentile, while a random vector's nearest
# piece has 0.20 at the median and 0.27-0.28 at the 99.9th percentile (the word embeddings share a direction, so even
# noise finds a piece near 0.2). 0.3 is over what noise reaches and under 98 % of the words' own nearest neighbours:
# a vector below it is further from the vocabulary than the words are from each other.
FAR_COSINE = 0.3


@dataclass(frozen=True)
class Neighbour:
    """A vocabulary token (as the tokenizer writes it, e.g. ``##ing``) and its cosine with the prompt vector."""

    token: str
    cosine: float


@dataclass(frozen=True)
class VectorReading:
    """The ``k`` nearest tokens of input prompt vector ``index``, nearest first; ``far``: none is near."""

    index: int
    nearest: list[Neighbour]
    far: bool

    def to_dict(self) -> dict:
        return asdict(self)


def nearest_tokens(clf, k: int = 5) -> list[VectorReading]:
    """For each input prompt vector of the PromptClassifier ``clf`` (after any encoder), the ``k`` vocabulary tokens
    of highest cosine similarity, special tokens left out, and whether it is far from every word (``FAR_COSINE``).

    >>> nearest_tokens(clf, k=3)[0]
    VectorReading(index=0, nearest=[Neighbour(token='great', cosine=0.61), ...], far=False)
    """
    if k < 1:
        raise ConfigError(f"k (the number of nearest tokens) must be at least 1, not {k}")
    bb = clf.backbone
    with torch.no_grad():
        vectors = clf.prompt_vectors().detach().float()
        if vectors.shape[0] == 0:
            return []
        words = bb.model.get_input_embeddings().weight.detach()
        cosine = F.normalize(vectors, dim=-1) @ F.normalize(words.float(), dim=-1).T  # [n, vocab]
        special = [i for i in getattr(bb.tokenizer, "all_special_ids", []) or [] if 0 <= i < words.shape[0]]
        cosine[:, special] = -2.0  # below any cosine: [CLS], [PAD]... are never read as words
        values, ids = cosine.topk(min(k, words.shape[0] - len(special)), dim=-1)
    with bb.tokenizer_lock:
        tokens = [bb.tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
    return [
        VectorReading(
            index=i,
            nearest=[Neighbour(str(t), round(float(c), 4)) for t, c in zip(row_tokens, row_values)],
            far=float(row_values[0]) < FAR_COSINE,
        )
        for i, (row_tokens, row_values) in enumerate(zip(tokens, values.tolist()))
    ]


def unread_note(clf) -> str | None:
    """What the reading leaves out, plainly: a deep adapter's per-layer tables, bias offsets and low-rank updates;
    None when nothing is left out."""
    parts = []
    if clf.deep is not None and clf.placement.num_prompt > 0:
        layers = clf.deep.tables.shape[0]
        parts.append(f"This deep adapter also sets a table for the input of each later layer ({layers} in all); those "
                     "replace hidden states inside the model, which are not word embeddings, so no word reading exists "
                     "for them.")  # fmt: skip
    if getattr(clf, "offsets", None) is not None:
        parts.append("Its offsets to the model's biases change what the layers compute, not the words they read.")
    if getattr(clf, "low_rank", None) is not None:
        parts.append(f"Its rank-{clf.config.lora_rank} updates of the model's linear layers change what the layers "
                     "compute, not the words they read.")  # fmt: skip
    return " ".join(["Only the input vectors are read.", *parts]) if parts else None


def read_prompt(clf, k: int = 5) -> dict:
    """The reading as JSON-ready data: ``{"far_cosine", "vectors": [{"index", "nearest": [{"token", "cosine"}],
    "far"}], "note"}`` (what ``python -m ptuning inspect --json`` prints and the model card is written from)."""
    return {
        "far_cosine": FAR_COSINE,
        "vectors": [r.to_dict() for r in nearest_tokens(clf, k)],
        "note": unread_note(clf),
    }


def reading_markdown(reading: dict) -> str:
    """A reading (``read_prompt``) as Markdown: a table of each vector's nearest words, then what it leaves out."""
    if not reading["vectors"]:
        lines = ["This adapter has no prompt vectors: there is nothing to read.", ""]
    else:
        rows = []
        for v in reading["vectors"]:
            words = ", ".join(f"{md(n['token'])} {n['cosine']:.2f}" for n in v["nearest"])
            rows.append((str(v["index"]), f"far from every word (nearest: {words})" if v["far"] else words))
        lines = table(("vector", "nearest words (cosine)"), rows)
        lines += [
            f"Each input prompt vector with the vocabulary tokens nearest it by cosine similarity; \"far from every "
            f"word\" means even the nearest is under {reading['far_cosine']:g}. Trained prompts move between words, "
            "so this hints at what a vector stands near, not at a text it means.",
            "",
        ]
    if reading.get("note"):
        lines += [md(reading["note"]), ""]
    return "\n".join(lines)


def markdown_table(clf, k: int = 5) -> str:
    """The reading of ``clf``'s prompt as Markdown, for the app to show beside the adapter's description.

    >>> gr.Markdown(markdown_table(clf))
    """
    return reading_markdown(read_prompt(clf, k))
