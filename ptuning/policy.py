"""What the operator of a public app lets its users do: which base models, whose Hub token, how much of everything.

One dataclass, ``AppSettings``, read from the environment (``PTUNING_`` and the field's name in capitals), with
defaults that keep a small Hugging Face Space alive; SECURITY.md says why each exists::

    PTUNING_ALLOWED_BASE_MODELS="sentence-transformers/all-MiniLM-L6-v2,BAAI/bge-small-en-v1.5" python app.py

The checks a remote user's request goes through live here, so that every face applies them the same way:
``check_base_model`` (a name from the Train tab or from an adapter's files), ``hub_token`` (whose token a Hub call
carries) and ``limit_training`` (epochs, batch size, wall-clock). The limits Gradio keeps (upload size, queue length,
session time to live) and ``data`` keeps (rows, characters) are passed to them by the app.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

from .backbones import EMBEDDED_ID
from .errors import ConfigError
from .training_args import MAX_AUTO_EPOCHS, TrainingArguments, auto_epochs

ENV_PREFIX = "PTUNING_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class AppSettings:
    """The operator's settings for the app (``from_env`` reads them); every default suits a small public Space."""

    allowed_base_models: tuple[str, ...] = field(
        default=(EMBEDDED_ID,),
        metadata={
            "help": "Base models users may train on, and that adapters they load may name: Hub ids or directories on "
            "this server, comma-separated, matched exactly. Nothing else is ever loaded for a user."
        },
    )
    use_server_token: bool = field(
        default=False,
        metadata={
            "help": "Let a request that brings no token of its own (pasted or by signing in) push and load with "
            "this server's Hugging Face login (HF_TOKEN, `hf auth login`). Only for an app you alone use."
        },
    )
    max_upload_bytes: int = field(
        default=10 * 2**20,
        metadata={
            "help": "Largest upload (a data file, a table to classify, an adapter zip), refused by Gradio before it "
            "lands; also the most a workbook or Parquet file may unpack to."
        },
    )
    max_rows: int = field(
        default=20_000, metadata={"help": "Most rows in a table to train on or to classify (uploaded or pasted)."}
    )
    max_text_chars: int = field(
        default=10_000,
        metadata={"help": "Longest text, in characters; longer ones are cut there (with a note) before tokenising."},
    )
    max_epochs: int = field(
        default=MAX_AUTO_EPOCHS, metadata={"help": "Most epochs a user may ask for (automatic epochs stay below it)."}
    )
    max_batch_size: int = field(default=128, metadata={"help": "Largest training batch a user may ask for."})
    max_search_trials: int = field(
        default=20, metadata={"help": "Most trials a settings search may run (its time limit is one run's); 0: no search."}
    )
    max_train_seconds: float = field(
        default=600.0,
        metadata={"help": "Wall-clock limit of one training run, in seconds: it stops there with its best adapter."},
    )
    max_queue: int = field(
        default=64, metadata={"help": "Most requests waiting in Gradio's queue; past it a user is asked to retry."}
    )
    session_ttl_s: float = field(
        default=3600.0,
        metadata={
            "help": "Seconds a browser session's data, adapter and files are kept after their last change (must "
            "exceed max_train_seconds); then they are deleted and its training cancelled."
        },
    )
    train_concurrency: int = field(default=1, metadata={"help": "Trainings at once on this machine."})
    predict_concurrency: int = field(
        default=16, metadata={"help": "Classify requests at once (they are batched together on the device)."}
    )
    train_gpu_seconds: int = field(
        default=120, metadata={"help": "ZeroGPU only: the GPU time a training call asks for, in seconds."}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_base_models", tuple(self.allowed_base_models))
        if not self.allowed_base_models or not all(isinstance(n, str) and n for n in self.allowed_base_models):
            raise ConfigError("allowed_base_models must name at least one base model")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name in _MAY_BE_ZERO else 1e-9
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not value >= least:
                raise ConfigError(f"{f.name} must be {'0 or more' if least == 0 else 'positive'}, not {value}")
        if self.session_ttl_s <= self.max_train_seconds:
            raise ConfigError("session_ttl_s must exceed max_train_seconds, or a running training would be cancelled")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "AppSettings":
        """The settings the environment gives (``PTUNING_MAX_ROWS=5000``...), the defaults for the others."""
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        given = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            if name in environ:
                given[f.name] = _parse(environ[name], hints[f.name], name)
        return cls(**given)

    # ------------------------------------------------------------------------------------------ the checks
    def check_base_model(self, name: str | None, what: str = "the base model") -> str:
        """``name`` (empty: the embedded default) when the operator allows it, else a ConfigError that lists those
        allowed. Names match exactly: a remote user never reaches a directory the operator did not list."""
        name = (name or "").strip() or EMBEDDED_ID
        if name not in self.allowed_base_models:
            allowed = ", ".join(repr(n) for n in self.allowed_base_models)
            raise ConfigError(f"{what} {name!r} is not allowed here; this app may load only: {allowed}")
        return name

    def hub_token(self, user_token: str | None) -> str | None | bool:
        """The token a user's Hub call carries: theirs, else the server's login only where the operator opted in
        (None lets huggingface_hub find it), else ``False`` (huggingface_hub then sends none)."""
        token = (user_token or "").strip()
        if token:
            return token
        return None if self.use_server_token else False

    def limit_training(self, args: TrainingArguments, n_examples: int) -> TrainingArguments:
        """``args`` for ``n_examples`` within this app's limits: too many epochs or too large a batch refused (a
        ConfigError), automatic epochs held at ``max_epochs``, the run's time budget at most ``max_train_seconds``."""
        if args.epochs is not None and args.epochs > self.max_epochs:
            raise ConfigError(f"at most {self.max_epochs} epochs here, not {args.epochs}; leave it empty for automatic")
        if args.batch_size > self.max_batch_size:
            raise ConfigError(f"the batch size may be at most {self.max_batch_size} here, not {args.batch_size}")
        epochs = args.epochs
        if epochs is None and self.max_epochs < MAX_AUTO_EPOCHS:
            n_train = max(1, n_examples - math.ceil(n_examples * args.val_split))
            epochs = min(auto_epochs(n_train, args.batch_size), self.max_epochs)
        budget = min(args.time_budget or math.inf, self.max_train_seconds)
        return dataclasses.replace(args, epochs=epochs, time_budget=budget if math.isfinite(budget) else None)


_MAY_BE_ZERO = ("max_search_trials",)  # 0 turns the feature off


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``max_rows`` -> ``PTUNING_MAX_ROWS``."""
    return ENV_PREFIX + field_name.upper()


def _parse(text: str, kind, name: str):
    try:
        if kind is bool:
            if text.strip().lower() not in _TRUE + _FALSE:
                raise ValueError("not a yes/no value")
            return text.strip().lower() in _TRUE
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return tuple(part.strip() for part in text.split(",") if part.strip())
    except ValueError:
        what = {bool: "yes or no", int: "a whole number", float: "a number"}.get(kind, "a list")
        raise ConfigError(f"{name}={text!r}: expected {what}") from None
