"""PromptClassifier: a frozen backbone, trainable prompt vectors placed anywhere in the input, and a small head.

The forward pass, for every placement and method alike:
1. word embeddings of the real tokens (``get_input_embeddings()``), prompt vector k wherever ``prompt_slots == k``;
2. the backbone's own forward on ``inputs_embeds``: it adds position and token-type embeddings once, over the
   whole sequence; ``deep`` adapters overwrite the prompt positions before every later layer (a pre-hook), and bias
   offsets and low-rank updates add to the outputs of the linear layers (forward hooks; ``offsets.py``);
3. the head: the backbone's own head and pooling (``pooling="model"``, PEFT's layout) or a pooled hidden state
   and a linear layer of ours.

Several adapters on one backbone run in *one* pass (``forward_mixed``): each row gathers its own adapter's prompts,
and the heads are applied per row.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

from .adapter_files import CARD_FILE, load_adapter, save_adapter
from .backbones import (
    Backbone,
    PassStopped,
    bias_offsets,
    deep_prompts,
    load_backbone,
    low_rank,
    prompt_positions,
    start_at,
    stop_after,
    with_prompts,
)
from .batching import collate, encode, length_grouped_batches
from .config import Method, Pooling, PromptConfig, peft_incompatible_reason
from .encoders import DeepPrompts, PromptEncoder, PromptTable, initial_prompt
from .offsets import BiasOffsets, LowRankUpdates, stacked_low_rank, stacked_offsets
from .errors import ConfigError
from .hub import adapter_directory, push_adapter
from .placement import parse_placement
from .seeding import Dropout, no_backbone_dropout


class LinearHead(nn.Module):
    """Our own head: dropout (its masks from the running step's generator), then one linear layer over the pooled
    hidden state."""

    def __init__(self, hidden: int, num_labels: int, dropout: float, generator: torch.Generator | None = None):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.linear = nn.Linear(hidden, num_labels)
        nn.init.normal_(self.linear.weight, std=0.02, generator=generator)
        nn.init.zeros_(self.linear.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(pooled))


class PromptClassifier(nn.Module):
    """Soft prompts plus a head on a frozen sequence classifier.

    >>> clf = PromptClassifier(labels=["negative", "positive"], placement="[P:4] {text} [P:4]")
    >>> clf.predict(["a gripping film"])[0]["label"] in ("negative", "positive")
    True

    Only the prompt (and its encoder) and the head are parameters of this module; the backbone is shared with every
    other adapter on the same base model and device, frozen and in eval mode. Its initial weights come from
    ``generator`` (``seeding.run_generator(seed)``), or from the process-wide generator when none is given.
    """

    def __init__(
        self,
        base_model: str | None = None,
        labels: Sequence[str] | None = None,
        *,
        config: PromptConfig | None = None,
        device: str | torch.device | None = None,
        generator: torch.Generator | None = None,
        **options,
    ):
        super().__init__()
        if config is None:
            config = PromptConfig(base_model=base_model or "", labels=list(labels or []), **options)
        backbone = load_backbone(config.base_model, device)
        config.base_model = backbone.name
        self.placement = parse_placement(config.placement, config.num_virtual_tokens)
        config.num_virtual_tokens = self.placement.num_prompt
        if config.start_layer is None:  # automatic, and no data to choose by (train() chooses before building)
            config.start_layer = 0
        if config.lora_rank is None:  # automatic too, and no data to choose by: none
            config.lora_rank = 0
        self.config = config
        self.info: dict = {}  # what training knows (metrics, hyperparameters, data): saved for the model card
        object.__setattr__(self, "backbone", backbone)  # not a submodule: never trained, saved or moved

        word = backbone.model.get_input_embeddings().weight
        with backbone.tokenizer_lock:
            init = initial_prompt(config, word, backbone.tokenizer, self.placement.num_prompt, generator)
        if config.method == Method.P_TUNING:
            self.prompt = PromptEncoder(init, config.encoder_type, config.encoder_hidden_size, generator)
        else:
            self.prompt = PromptTable(init)
        # Every deep table starts at the input prompt. Starting each at what its layer receives of that prompt (hidden
        # states ten times the norm) measured the same on movie polarity (BENCHMARKS.md, issue 14): not kept.
        if not 0 <= config.start_layer < max(backbone.num_layers, 1):
            raise ConfigError(f"start_layer must be below the backbone's {backbone.num_layers} layers, not "
                              f"{config.start_layer}")  # fmt: skip
        self.deep = DeepPrompts(backbone.num_layers, init, config.start_layer) if config.method == Method.DEEP else None
        self.prompt.requires_grad_(config.start_layer == 0)  # below a later start, the input prompt stays as it is
        self.offsets = self.low_rank = None
        if config.bias_offsets or config.lora_rank:
            backbone.enable_offsets()
        if config.bias_offsets:
            self.offsets = BiasOffsets(backbone.layers, config.start_layer)
        if config.pooling == Pooling.MODEL:
            self.head = backbone.new_head(config.num_labels, generator)
        else:
            self.head = LinearHead(backbone.hidden_size, config.num_labels, config.head_dropout, generator)
        self.head.requires_grad_(config.train_head)
        if config.lora_rank:  # drawn last: the other parts start as they would without it
            self.low_rank = LowRankUpdates(backbone.layers, config.lora_rank, config.start_layer, generator)
        self.to(backbone.device)

    # ----------------------------------------------------------------------------------------------- inputs
    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def encode(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, max_length: int | None = None):
        """Tokenise and lay out texts for this adapter's placement (``batching.Encoded``)."""
        limit = min(max_length or self.backbone.max_length, self.backbone.max_length)
        bb = self.backbone
        with bb.tokenizer_lock:
            return encode(bb.tokenizer, bb.layout, self.placement, list(texts), _opt_list(text_pairs), limit)

    def collate(self, examples) -> dict[str, torch.Tensor]:
        batch = collate(examples, self.backbone.layout.pad_id, left_pad=self.backbone.is_decoder)
        return {k: v.to(self.device) for k, v in batch.items()}

    # ----------------------------------------------------------------------------------------------- forward
    def prompt_vectors(self) -> torch.Tensor:
        """The input prompt, ``[num_virtual_tokens, hidden]`` (for p-tuning: the encoder's output)."""
        return self.prompt()

    def forward(
        self, input_ids, prompt_slots, attention_mask, token_type_ids=None, start_states=None, start_layer=None
    ) -> torch.Tensor:
        """Logits of a collated batch; ``start_states`` (``[B, L, H]``, ``pad_states`` of ``lower_states``) starts the
        pass at layer ``start_layer`` (default ``config.start_layer``) from them instead of computing the layers
        below."""
        rows = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        batch = dict(
            input_ids=input_ids, prompt_slots=prompt_slots, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return forward_mixed([self], rows, batch, start_states=start_states, start_layer=start_layer)

    @torch.inference_mode()
    def lower_states(self, examples, batch_size: int = 64, layer: int | None = None) -> list[torch.Tensor]:
        """What the layers below ``layer`` (default ``config.start_layer``) make of each laid-out example, ``[its
        length, H]`` each (in input order, on the adapter's device): the states a pass of this adapter starts from at
        that layer. Below the start layer they depend on nothing that trains (the prompts below the start stay as they
        are), so a run computes them once; a run that freezes its lower layers computes them once more then."""
        k = self.config.start_layer if layer is None else layer
        if k == 0:
            raise ConfigError("lower_states needs a layer above 0")
        out = []
        for start in range(0, len(examples), batch_size):
            part = list(examples[start : start + batch_size])
            seen: dict = {}
            token = stop_after.set((k - 1, seen))
            try:
                with no_backbone_dropout():  # kept states are the frozen layers' own, in a training step too
                    rows = torch.zeros(len(part), dtype=torch.long, device=self.device)
                    forward_mixed([self], rows, self.collate(part))
            except PassStopped:
                pass
            finally:
                stop_after.reset(token)
            left = self.backbone.is_decoder  # left-padded: an example's positions are the last ones
            for row, e in enumerate(part):
                n = len(e.input_ids)
                states = seen["states"][row]
                out.append((states[-n:] if left else states[:n]).clone())
        return out

    def start_states(self, examples: Sequence, kept: Sequence[torch.Tensor | None], layer: int | None = None):
        """``pad_states`` of ``examples``' states at ``layer`` (default ``config.start_layer``): ``kept[i]`` where
        there is one, else computed now."""
        states = list(kept)
        missing = [i for i, s in enumerate(states) if s is None]
        if missing:
            for i, s in zip(missing, self.lower_states([examples[i] for i in missing], layer=layer)):
                states[i] = s
        return self.pad_states(states)

    def pad_states(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """``lower_states`` of a batch's examples as one ``[B, L, H]`` tensor, padded on the side ``collate`` pads."""
        length = max(s.shape[0] for s in states)
        out = states[0].new_zeros(len(states), length, states[0].shape[1])
        for row, s in enumerate(states):
            if self.backbone.is_decoder:
                out[row, length - s.shape[0] :] = s
            else:
                out[row, : s.shape[0]] = s
        return out

    @torch.inference_mode()
    def predict(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32
    ) -> list[dict]:
        """Classify texts: ``[{"label": ..., "score": ..., "scores": {label: probability}}]``, in input order.

        For regression, ``label`` is None and ``score`` is the predicted value.
        """
        rows = [0] * len(texts)
        return predict_mixed([self], texts, rows, text_pairs=text_pairs, batch_size=batch_size)

    # ----------------------------------------------------------------------------------------------- files
    @property
    def peft_incompatible_reason(self) -> str | None:
        """Why PEFT cannot load this adapter, or None when it can."""
        c = self.config
        return peft_incompatible_reason(c.method, c.placement, c.pooling, c.bias_offsets, c.lora_rank)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's format) and ptuning's own files."""
        return save_adapter(self, save_directory)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | Path,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        endpoint: str | None = None,
        device: str | torch.device | None = None,
        base_model: str | None = None,
        include_resume: bool = False,
    ) -> "PromptClassifier":
        """Load an adapter (ours or PEFT's PROMPT_TUNING/P_TUNING SEQ_CLS) from a directory or a Hub repo.

        ``revision``, ``token`` and ``endpoint`` say where on the Hub (``hub.download_adapter``); ``include_resume``
        also fetches p-tuning's encoder, to train further. ``base_model`` overrides the base the adapter names (e.g.
        a local copy of it).
        """
        where = dict(revision=revision, token=token, endpoint=endpoint, include_resume=include_resume)
        return load_adapter(cls, adapter_directory(path_or_repo_id, **where), device=device, base_model=base_model)

    def push_to_hub(
        self,
        repo_id: str,
        token: str | bool | None = None,
        private: bool = False,
        endpoint: str | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Save this adapter with a model card and upload it to the Hub in one commit; returns the repo URL."""
        from .model_card import card_info, make_model_card  # here: its metric names import scikit-learn, which
        # loading and predicting (a server) never need

        with tempfile.TemporaryDirectory(prefix="ptuning-push-") as folder:
            save_adapter(self, folder)
            make_model_card(card_info(self, Path(folder), repo_id)).save(Path(folder) / CARD_FILE)
            return push_adapter(
                folder, repo_id, token=token, private=private, endpoint=endpoint, commit_message=commit_message
            )

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


# What an adapter started from another one's prompt takes of it (``start_from``): the settings that shape the prompt
PROMPT_SHAPE = ("method", "num_virtual_tokens", "encoder_type", "encoder_hidden_size", "start_layer", "bias_offsets",
                "lora_rank")


def start_from(clf: PromptClassifier, source: PromptClassifier) -> bool:
    """Start ``clf``'s prompt (its table or encoder, deep tables, bias offsets, low-rank updates) at ``source``'s, and its head too when
    both classify into the same labels the same way; returns whether the head was taken. A ConfigError when the two
    do not share a base model and the settings that shape a prompt (``PROMPT_SHAPE``).

    Prompt transfer (SPoT, Vu et al. 2022): a prompt trained on a related task is a better start on little data.
    """
    if source.backbone is not clf.backbone:
        raise ConfigError(f"the adapter to start from was trained on {source.config.base_model!r}; this run trains on "
                          f"{clf.config.base_model!r}: choose one on the same base model")  # fmt: skip
    differ = [k for k in PROMPT_SHAPE if getattr(source.config, k) != getattr(clf.config, k)]
    if differ:
        theirs = ", ".join(f"{k} {getattr(source.config, k)!r}" for k in differ)
        raise ConfigError(f"the adapter to start from has {theirs}: leave those settings at its values to start from it")
    with torch.no_grad():
        if isinstance(clf.prompt, PromptEncoder) and not isinstance(source.prompt, PromptEncoder):
            # a p-tuning adapter without its encoder (PEFT drops it): the new encoder's residual starts at zero, so the
            # prompt starts at the source's vectors all the same
            clf.prompt.embedding.weight.copy_(source.prompt_vectors())
        else:
            clf.prompt.load_state_dict(source.prompt.state_dict())
        for mine, theirs in ((clf.deep, source.deep), (clf.offsets, source.offsets), (clf.low_rank, source.low_rank)):
            if mine is not None:
                mine.load_state_dict(theirs.state_dict())
        same_head = (source.config.labels, source.config.task, source.config.pooling) == (
            clf.config.labels, clf.config.task, clf.config.pooling)  # fmt: skip
        if same_head:
            clf.head.load_state_dict(source.head.state_dict())
    return same_head


def _opt_list(x: Sequence[str] | None) -> list[str] | None:
    return None if x is None else list(x)


# --------------------------------------------------------------------------------------------- the pass
def forward_mixed(
    adapters: Sequence[PromptClassifier],
    rows: torch.Tensor,
    batch: dict,
    start_states: torch.Tensor | None = None,
    start_layer: int | None = None,
) -> torch.Tensor:
    """Logits ``[B, max num_labels]`` for a batch whose row i uses ``adapters[rows[i]]``, in one backbone pass.

    All adapters must share the backbone. Columns past an adapter's own label count are zero. ``start_states`` (one
    adapter only: a training step) starts the pass at ``start_layer`` (default: the adapter's) from states computed
    before.
    """
    backbone = adapters[0].backbone
    if any(a.backbone is not backbone for a in adapters):
        raise ConfigError("adapters in one batch must share the same base model and device")
    ids, slots, mask = batch["input_ids"], batch["prompt_slots"], batch["attention_mask"]
    words = backbone.model.get_input_embeddings()(ids)
    prompts = _stack_padded([a.prompt_vectors() for a in adapters])  # [A, n, H]
    embeds = words
    if prompts.shape[1]:  # else no adapter has a prompt vector: heads on the frozen backbone alone
        embeds = with_prompts(words, prompts, prompt_positions(rows, slots))

    kwargs = {"inputs_embeds": embeds, "attention_mask": mask}
    if backbone.uses_token_types and batch.get("token_type_ids") is not None:
        kwargs["token_type_ids"] = batch["token_type_ids"]
    if backbone.is_decoder:  # left-padded: positions count real tokens only
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)

    model_pooled = [a for a in adapters if a.config.pooling == Pooling.MODEL]
    view = backbone.with_head(_stacked_head([a.head for a in model_pooled])) if model_pooled else backbone.model
    own_pooled = len(model_pooled) < len(adapters)

    with _per_row(adapters, rows, slots, start_states, start_layer), _autocast(backbone):
        out = view(**kwargs, output_hidden_states=own_pooled)

    width = max(a.config.num_labels for a in adapters)
    if len(adapters) == 1:
        a = adapters[0]
        return _own_logits(a, out.hidden_states[-1], mask, slots) if own_pooled else out.logits.float()
    logits = embeds.new_zeros(ids.shape[0], width, dtype=torch.float32)
    offset = 0
    for i, a in enumerate(adapters):
        sel = (rows == i).nonzero(as_tuple=True)[0]
        n = a.config.num_labels
        if a.config.pooling == Pooling.MODEL:
            part, offset = out.logits[sel, offset : offset + n].float(), offset + n
        else:
            part = _own_logits(a, out.hidden_states[-1][sel], mask[sel], slots[sel])
        logits[sel, :n] = part
    return logits


@contextmanager
def _per_row(adapters: Sequence[PromptClassifier], rows: torch.Tensor, slots: torch.Tensor, start_states,
             start_layer: int | None = None):  # fmt: skip
    """What the backbone's hooks read during one pass (``backbones``): each row's deep tables, bias offsets and
    low-rank updates, and the layer the pass starts at; reset afterwards, whatever happens."""
    has_deep = [a.deep is not None and a.placement.num_prompt > 0 for a in adapters]  # no vectors: nothing to set
    tokens = []
    try:
        if any(has_deep):
            like = next(a.deep() for a, d in zip(adapters, has_deep) if d)
            tables = _stack_padded([a.deep() if d else None for a, d in zip(adapters, has_deep)], like=like)
            is_deep = torch.tensor(has_deep, device=slots.device)
            deep_slots = torch.where(is_deep[rows][:, None], slots, -1)
            tokens.append((deep_prompts, deep_prompts.set((tables, prompt_positions(rows, deep_slots)))))
        if any(a.offsets is not None for a in adapters):
            offsets = stacked_offsets([a.offsets() if a.offsets is not None else None for a in adapters])
            tokens.append((bias_offsets, bias_offsets.set((offsets, rows, tuple(slots.shape)))))
        if any(a.low_rank is not None for a in adapters):
            updates = stacked_low_rank([a.low_rank() if a.low_rank is not None else None for a in adapters])
            tokens.append((low_rank, low_rank.set((updates, rows, tuple(slots.shape)))))
        if start_states is not None:
            layer = adapters[0].config.start_layer if start_layer is None else start_layer
            if len(adapters) != 1 or not layer:
                raise ConfigError("start_states are for one adapter, at a layer above 0")
            tokens.append((start_at, start_at.set((layer, start_states))))
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _own_logits(adapter: PromptClassifier, hidden: torch.Tensor, mask: torch.Tensor, slots: torch.Tensor):
    return adapter.head(pool(hidden.float(), mask, slots, adapter.config.pooling))


def pool(hidden: torch.Tensor, mask: torch.Tensor, slots: torch.Tensor, how: Pooling) -> torch.Tensor:
    """``[B, L, H]`` to ``[B, H]``: the mean over the real tokens, or the first / last attended position.

    The mean leaves the prompt positions out: it is the sentence embedding the backbone was trained to give
    (all-MiniLM-L6-v2 is a mean-pooling model), which the prompts steer through attention (measured: +1 point
    on movie polarity over a mean that includes them; BENCHMARKS.md).
    """
    if how == Pooling.MEAN:
        m = (mask * (slots < 0))[..., None].to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if how == Pooling.FIRST:
        index = torch.where(mask.bool(), positions, mask.shape[1]).min(1).values
    else:
        index = torch.where(mask.bool(), positions, -1).max(1).values
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def _stack_padded(tables: list, like: torch.Tensor | None = None) -> torch.Tensor:
    """Stack tensors whose second-to-last dim (the prompt length) differs, zero-padding it; None means all zeros."""
    ref = like if like is not None else tables[0]
    n = max(t.shape[-2] for t in tables if t is not None)
    out = []
    for t in tables:
        if t is None:
            t = ref.new_zeros(*ref.shape[:-2], n, ref.shape[-1])
        if t.shape[-2] < n:
            t = torch.cat([t, t.new_zeros(*t.shape[:-2], n - t.shape[-2], t.shape[-1])], dim=-2)
        out.append(t)
    return torch.stack(out)


def _stacked_head(heads: list[nn.Module]) -> nn.Module:
    """One head computing every adapter's logits side by side: first linear layers stacked, later ones block-diagonal.

    Exact for heads made of linear layers and element-wise functions (BERT's, RoBERTa's, GPT-2's, ...), since the
    input the head reads is the same frozen computation for all adapters.
    """
    if len(heads) == 1:
        return heads[0]
    stacked = copy.deepcopy(heads[0])
    names = [n for n, m in stacked.named_modules() if isinstance(m, nn.Linear)]
    for i, name in enumerate(names):
        layers = [h.get_submodule(name) if name else h for h in heads]
        weight = torch.cat([m.weight for m in layers]) if i == 0 else torch.block_diag(*[m.weight for m in layers])
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=layers[0].bias is not None).to(weight)
        new.weight = nn.Parameter(weight, requires_grad=weight.requires_grad)
        if new.bias is not None:
            bias = torch.cat([m.bias for m in layers])
            new.bias = nn.Parameter(bias, requires_grad=bias.requires_grad)
        parent, _, attr = name.rpartition(".")
        setattr(stacked.get_submodule(parent), attr, new)
    return stacked


def _autocast(backbone: Backbone):
    # A bf16 backbone (backbones.precision_dtype) runs under autocast, so that the fp32 prompts and offsets meet it
    if backbone.model.dtype == torch.bfloat16:
        return torch.autocast(backbone.device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.inference_mode()
def predict_mixed(
    adapters: Sequence[PromptClassifier],
    texts: Sequence[str],
    adapter_of_text: Sequence[int],
    text_pairs: Sequence[str] | None = None,
    batch_size: int = 32,
) -> list[dict]:
    """Classify ``texts[i]`` with ``adapters[adapter_of_text[i]]``; all adapters share one backbone pass per batch.

    >>> predict_mixed([sentiment, topic], ["great film", "stocks fell"], [0, 1])
    """
    if len(adapter_of_text) != len(texts):
        raise ConfigError("give one adapter index per text")
    if not texts:
        return []
    # Each adapter lays out its own texts (its own placement), then rows are batched together by length.
    examples: list = [None] * len(texts)
    for i, a in enumerate(adapters):
        idx = [j for j, k in enumerate(adapter_of_text) if k == i]
        if idx:
            pairs = [text_pairs[j] for j in idx] if text_pairs is not None else None
            for j, e in zip(idx, a.encode([texts[j] for j in idx], pairs).examples):
                examples[j] = e
    logits = logits_mixed(adapters, examples, adapter_of_text, batch_size)
    return [describe(adapters[k], row) for k, row in zip(adapter_of_text, logits)]


@torch.inference_mode()
def logits_mixed(
    adapters: Sequence[PromptClassifier],
    examples: Sequence,
    adapter_of_example: Sequence[int],
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
) -> list[torch.Tensor]:
    """Logits of laid-out ``examples`` (``PromptClassifier.encode``), each with its adapter, in input order.

    Rows of every adapter are batched together by length: ``batch_size`` rows per backbone pass at most, and with
    ``max_batch_tokens`` at most that many padded positions (a longest-first cut; one row always fits).
    """
    for a in adapters:
        a.eval()
    results: list = [None] * len(examples)
    lead = adapters[0]
    lengths = [len(e.input_ids) for e in examples]
    for batch_idx in _token_capped(length_grouped_batches(lengths, batch_size), lengths, max_batch_tokens):
        batch = lead.collate([examples[j] for j in batch_idx])
        rows = torch.tensor([adapter_of_example[j] for j in batch_idx], device=lead.device)
        logits = forward_mixed(adapters, rows, batch).cpu()
        for j, row in zip(batch_idx, logits):
            results[j] = row
    return results


def _token_capped(batches: list[list[int]], lengths: list[int], max_tokens: int | None) -> list[list[int]]:
    # Batches are sorted by length, so a batch costs len(batch) x its last (longest) row's length when padded.
    if not max_tokens:
        return batches
    out = []
    for b in batches:
        part: list[int] = []
        for j in b:
            if part and (len(part) + 1) * lengths[j] > max_tokens:
                out.append(part)
                part = []
            part.append(j)
        out.append(part)
    return out


def describe(adapter: PromptClassifier, logits: torch.Tensor) -> dict:
    """One row of logits as ``{"label", "score", "scores"}`` (regression: label None, score the value)."""
    if adapter.config.task == "regression":
        return {"label": None, "score": float(logits[0]), "scores": {}}
    probs = torch.softmax(logits[: adapter.config.num_labels].float(), -1).tolist()
    scores = dict(zip(adapter.config.labels, probs))
    best = max(range(len(probs)), key=probs.__getitem__)
    return {"label": adapter.config.labels[best], "score": probs[best], "scores": scores}
