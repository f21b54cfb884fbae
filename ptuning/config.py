"""What a prompt adapter is: one dataclass, saved as JSON beside the weights; and what PEFT can load of it.

The help texts are read by the CLI (``--help``) and the app (widget info), so they are written for users; the
metadata follows the convention of ``options.py``.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from enum import Enum

from .errors import ConfigError

MAX_LABELS = 10_000  # classes of one adapter: its head has this many outputs
MAX_ENCODER_HIDDEN = 8192  # p-tuning's encoder width (PEFT's default is 128)
MAX_LORA_RANK = 64  # low-rank updates: rank 64 on MiniLM is already 4x the weights of rank 16


class Method(str, Enum):
    """How the prompt vectors are produced."""

    PROMPT = "prompt"  # a plain trainable table (Lester et al., prompt tuning)
    P_TUNING = "p-tuning"  # a table fed through an MLP/LSTM encoder (Liu et al., P-Tuning)
    DEEP = "deep"  # trainable vectors at the input and at every layer (P-Tuning v2 style)


class EncoderType(str, Enum):
    """The reparameterising encoder of ``p-tuning`` (PEFT's names)."""

    MLP = "MLP"
    LSTM = "LSTM"


class Pooling(str, Enum):
    """What the classification head reads."""

    MODEL = "model"  # the backbone's own head and pooling ([CLS] pooler, last token...): PEFT's layout
    MEAN = "mean"  # mean of the last hidden states over the real tokens (prompts left out), then a linear head
    FIRST = "first"  # the first position's last hidden state, then a linear head
    LAST = "last"  # the last real position's last hidden state, then a linear head


class Init(str, Enum):
    """How the prompt table starts."""

    VOCAB = "vocab"  # rows sampled from the backbone's word embeddings: same scale as real tokens
    TEXT = "text"  # the embeddings of ``init_text``, repeated to the prompt length
    # The label names' embeddings (Lester et al. 2021 found class labels the best start): one vector per label, the
    # mean of its word pieces; the rest of the prompt sampled as for vocab
    LABELS = "labels"
    RANDOM = "random"  # N(0, 1), as PEFT's RANDOM init


@dataclass
class PromptConfig:
    """Everything needed to rebuild an adapter around its backbone."""

    base_model: str = field(
        default="",
        metadata={
            "help": "Backbone: a local directory or a Hub id; empty means the embedded all-MiniLM-L6-v2.",
            "flag": "--model",
            "metavar": "M",
        },
    )
    labels: list[str] = field(
        default_factory=list,
        metadata={"help": "Class names in order (index i is labels[i]); empty for regression."},
    )
    task: str = field(default="classification", metadata={"help": "classification or regression."})
    # Defaults measured on all-MiniLM-L6-v2 / movie polarity (BENCHMARKS.md): 5 deep vectors are as accurate as a
    # 20-vector prompt table with a quarter of its extra positions (the cost at training and at inference); 20 deep
    # vectors add 0.6-0.8 points for 4x that cost.
    method: Method = field(
        default=Method.DEEP,
        metadata={
            "help": "deep: vectors at the input and every layer; prompt: a trainable table; "
            "p-tuning: a table + MLP/LSTM encoder."
        },
    )
    num_virtual_tokens: int = field(
        default=5,
        metadata={
            "help": "How many prompt vectors are inserted (each one costs a token's compute at every layer).",
            "flag": "--prompt-length",
        },
    )
    start_layer: int | None = field(
        default=None,
        metadata={
            "help": "deep only: the first layer whose prompt trains. 0 trains the input prompt and every layer's. K "
            "keeps the prompts below layer K at their start: the frozen layers below K then compute the same states "
            "for a text every epoch, computed once and reused, and a training step runs layers K and up only. Empty: "
            "automatic, a third of the way up (layer 2 of MiniLM's 6) for deep prompts trained on 1,000 texts or "
            "more (with low-rank updates: 1,000 to 4,999 texts), else 0.",
            "metavar": "K",
        },
    )
    bias_offsets: bool = field(
        default=False,
        metadata={
            "help": "Also train an offset to the bias of every linear layer and LayerNorm of the backbone, from "
            "start_layer up (BitFit): more capacity, a few tens of KB, and adapters still share one pass.",
            "flag": "--bias-offsets",
            "cli_help": "Also train offsets to the backbone's biases from --start-layer up (BitFit): more capacity, "
            "a few tens of KB.",
        },
    )
    lora_rank: int | None = field(
        default=None,
        metadata={
            "help": "Also train a low-rank update (LoRA, Hu et al. 2022) of this rank to every linear layer of the "
            "backbone, from start_layer up, applied per row: the most capacity of the kinds that still share one "
            "pass, about 28,000 numbers a layer at rank 4 on a 384-wide model. 0: none. Empty: automatic, rank 4 "
            "for deep prompts (trained in a few hundred steps), 0 for the other methods.",
            "flag": "--lora-rank",
            "metavar": "R",
            "cli_help": "Also train low-rank updates (LoRA) of rank R to every linear layer from --start-layer up: "
            "more capacity than bias offsets, about 110 KB a layer at rank 4 for MiniLM. 0: none. Empty: automatic, "
            "rank 4 for deep prompts, 0 for the other methods.",
        },
    )
    placement: str = field(
        default="start",
        metadata={
            "help": 'Where the prompt goes: start (before [CLS], PEFT layout), middle, end, or a template '
            'such as "[P:4] {text} [P:4]" or "{text} [P:3] {text_pair}".',
            "metavar": "WHERE",
        },
    )
    pooling: Pooling = field(
        default=Pooling.MEAN,
        metadata={"help": "Head input: model (backbone's own head, PEFT layout), mean, first or last token."},
    )
    init: Init = field(
        default=Init.VOCAB,
        metadata={
            "help": "Prompt init: vocab (sampled words), labels (the label names' words, then sampled words), text "
            "or random."
        },
    )
    init_text: str = field(default="", metadata={"help": 'Text for init="text", e.g. "Classify the sentiment:".'})
    encoder_type: EncoderType = field(
        default=EncoderType.MLP, metadata={"help": "p-tuning encoder: MLP or LSTM.", "flag": "--encoder"}
    )
    encoder_hidden_size: int = field(default=128, metadata={"help": "Hidden size of the p-tuning encoder."})
    train_head: bool = field(
        default=True,
        metadata={
            "help": "Train the classification head (else keep it frozen).",
            "flag": "--freeze-head",
            "cli_help": "Keep the classification head at its initial weights.",
        },
    )
    head_dropout: float = field(
        default=0.1, metadata={"help": "Dropout before our own linear head.", "metavar": "P"}
    )

    def __post_init__(self) -> None:
        # Values may come from a file someone else wrote (an adapter from the Hub): every one is checked for its type
        # and range before anything is built from it, so a hostile one is refused in one line, never allocated.
        for name in ("base_model", "task", "placement", "init_text"):
            _require(isinstance(getattr(self, name), str), f"{name} must be a text, not {getattr(self, name)!r}")
        for name in ("method", "pooling", "init", "encoder_type"):
            _require(isinstance(getattr(self, name), str), f"{name} must be one of the names in --help")
        try:
            self.method = Method(self.method)
            self.pooling = Pooling(self.pooling)
            self.init = Init(self.init)
            et = self.encoder_type
            self.encoder_type = EncoderType(et.value if isinstance(et, Enum) else str(et).upper())
        except ValueError as e:
            raise ConfigError(f"{e}; choose one of the values listed in --help") from None
        if self.task not in ("classification", "regression"):
            raise ConfigError(f"task must be 'classification' or 'regression', not {self.task!r}")
        _require(isinstance(self.labels, (list, tuple)), "labels must be a list of class names")
        _require(all(_is_label(x) for x in self.labels), "each label must be a text or a number")
        if self.task == "classification" and len(self.labels) < 2:
            raise ConfigError("a classifier needs at least two label names")
        _require(len(self.labels) <= MAX_LABELS, f"at most {MAX_LABELS} labels, not {len(self.labels)}")
        self.num_virtual_tokens = _whole(self.num_virtual_tokens, "num_virtual_tokens")
        if self.num_virtual_tokens < 0 or self.num_virtual_tokens > 512:
            raise ConfigError(f"num_virtual_tokens must be between 0 and 512, not {self.num_virtual_tokens}")
        if self.start_layer is not None:  # None: automatic (train() chooses from the data, else 0)
            self.start_layer = _whole(self.start_layer, "start_layer")
            _require(self.start_layer >= 0, f"start_layer must be 0 or more, not {self.start_layer}")
            _require(self.start_layer == 0 or self.method == Method.DEEP,
                     f"start_layer {self.start_layer} needs the deep method (the only one with a prompt at every "
                     "layer)")  # fmt: skip
        self.encoder_hidden_size = _whole(self.encoder_hidden_size, "encoder_hidden_size")
        _require(
            1 <= self.encoder_hidden_size <= MAX_ENCODER_HIDDEN,
            f"encoder_hidden_size must be between 1 and {MAX_ENCODER_HIDDEN}, not {self.encoder_hidden_size}",
        )
        _require(isinstance(self.train_head, bool), f"train_head must be true or false, not {self.train_head!r}")
        _require(isinstance(self.bias_offsets, bool), f"bias_offsets must be true or false, not {self.bias_offsets!r}")
        if self.lora_rank is not None:  # None: automatic (train() chooses from the data, else 0)
            self.lora_rank = _whole(self.lora_rank, "lora_rank")
            _require(0 <= self.lora_rank <= MAX_LORA_RANK,
                     f"lora_rank must be between 0 (none) and {MAX_LORA_RANK}, not {self.lora_rank}")  # fmt: skip
        _require(
            isinstance(self.head_dropout, (int, float)) and not isinstance(self.head_dropout, bool)
            and 0 <= self.head_dropout < 1,
            f"head_dropout must be a number in [0, 1), not {self.head_dropout!r}",
        )  # fmt: skip
        self.head_dropout = float(self.head_dropout)
        self.labels = [str(label) for label in self.labels]

    @property
    def num_labels(self) -> int:
        return 1 if self.task == "regression" else len(self.labels)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d = {k: (v.value if isinstance(v, Enum) else v) for k, v in d.items()}
        # Settings added after format 1 are written only when they differ from their default, so that an adapter
        # which does not use them still loads in the ptuning versions before them.
        return {k: v for k, v in d.items() if not (k in _LATER_SETTINGS and v in (_LATER_SETTINGS[k], None))}

    @classmethod
    def from_dict(cls, d: dict) -> "PromptConfig":
        """The config a dict (JSON) describes; a ConfigError for anything else, whatever ``d`` holds."""
        if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
            raise ConfigError("an adapter config must be a JSON object of named settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown adapter settings {unknown}: was it written by a newer ptuning?")
        return cls(**d)


_LATER_SETTINGS = {"start_layer": 0, "bias_offsets": False, "lora_rank": 0}  # name: default


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _whole(value, name: str) -> int:
    """``value`` as an int when it is a whole number (numpy's included), else a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _is_label(value) -> bool:
    return isinstance(value, (str, numbers.Real)) and not isinstance(value, bool)


def additions(bias_offsets: bool, lora_rank: int | None) -> list[str]:
    """What an adapter adds to the backbone's layers besides its prompt, in words (``["bias offsets", "rank-4
    updates"]``), for the lines that describe an adapter or a trial."""
    return [*(["bias offsets"] if bias_offsets else []), *([f"rank-{lora_rank} updates"] if lora_rank else [])]


def peft_incompatible_reason(
    method: Method | str, placement: str, pooling: Pooling | str, bias_offsets: bool = False, lora_rank: int = 0
) -> str | None:
    """Why PEFT cannot load an adapter with these settings, or None when it can: PEFT only prepends prompts (no deep
    ones, no bias offsets, no low-rank updates beside them) and classifies with the backbone's own head."""
    if bias_offsets:
        return "offsets to the backbone's biases have no place in PEFT's prompt-learning adapters"
    if lora_rank:
        return "low-rank updates beside a prompt have no place in PEFT's prompt-learning adapters"
    if method == Method.DEEP:
        return "deep prompts (one table per layer) have no PEFT equivalent that runs on this backbone"
    if str(placement).strip().lower() != "start":
        return f"PEFT only prepends prompts; this adapter places them '{placement}'"
    if pooling != Pooling.MODEL:
        how = getattr(pooling, "value", pooling)
        return f"PEFT uses the backbone's own head; this adapter's head reads '{how}' pooling"
    return None


def peft_compatible_options(options: dict) -> dict:
    """``options`` (PromptConfig fields) completed into an adapter PEFT can load: method prompt, placement start and
    the backbone's own head where not given; a ConfigError when a given one is beyond PEFT.

    >>> peft_compatible_options({"method": "p-tuning"})["pooling"]
    'model'
    """
    completed = {"method": Method.PROMPT.value, "placement": "start", "pooling": Pooling.MODEL.value, **options}
    reason = peft_incompatible_reason(completed["method"], completed["placement"], completed["pooling"],
                                      bool(completed.get("bias_offsets")), completed.get("lora_rank") or 0)  # fmt: skip
    if reason:
        raise ConfigError(f"PEFT could not load this adapter: {reason}. Drop that setting for a PEFT-compatible one")
    return {**completed, "placement": "start"}
