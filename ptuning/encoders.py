"""Prompt parameterisations: a plain table, PEFT's MLP/LSTM prompt encoder, and per-layer (deep) prompts.

Each module's ``forward()`` returns the prompt vectors, ``[num_virtual_tokens, hidden]`` (deep: one table per
layer after the first). Parameters stay in fp32 whatever the backbone's dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderType, Init, PromptConfig
from .seeding import reset_parameters


def initial_prompt(
    config: PromptConfig, word_embeddings: torch.Tensor, tokenizer, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The starting prompt table ``[n, hidden]`` for the chosen init (vocab, labels, text or random), its random
    draws from ``generator`` (None: the process-wide generator)."""
    hidden = word_embeddings.shape[1]
    if config.init == Init.RANDOM or n == 0:
        return torch.randn(n, hidden, generator=generator)
    if config.init == Init.TEXT and config.init_text.strip():
        ids = tokenizer(config.init_text, add_special_tokens=False)["input_ids"]
        ids = (ids * (n // max(len(ids), 1) + 1))[:n]
        return word_embeddings[torch.tensor(ids)].detach().float().clone()
    first = word_embeddings.new_zeros(0, hidden, dtype=torch.float32)
    if config.init == Init.LABELS:
        first = label_vectors(config.labels, word_embeddings, tokenizer, n)
    return torch.cat([first, _vocab_sample(word_embeddings, n - first.shape[0], generator)])


def label_vectors(labels: list[str], word_embeddings: torch.Tensor, tokenizer, n: int) -> torch.Tensor:
    """At most ``n`` vectors from the label names: each label's word pieces averaged (Lester et al. 2021); with more
    labels than ``n``, vector i also averages labels i+n, i+2n, ... so every label has a say. Labels that give no
    ordinary word piece (an empty name, only unknown characters) are left out; none at all gives ``[0, hidden]``
    (regression has no labels: the caller samples the vocabulary instead)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    per_label = []
    for label in labels:
        ids = [i for i in tokenizer(str(label), add_special_tokens=False)["input_ids"] if i not in special]
        if ids:
            per_label.append(word_embeddings[torch.tensor(ids)].detach().float().mean(0))
    if not per_label or n == 0:
        return word_embeddings.new_zeros(0, word_embeddings.shape[1], dtype=torch.float32)
    groups = [per_label[i::n] for i in range(min(n, len(per_label)))]
    return torch.stack([torch.stack(g).mean(0) for g in groups])


def _vocab_sample(word_embeddings: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    # Sample among the more frequent word pieces (low ids in most vocabularies skip [unused] rows in BERT's)
    lo = min(1000, word_embeddings.shape[0] // 4)
    ids = torch.randint(lo, min(word_embeddings.shape[0], 5000), (n,), generator=generator)
    return word_embeddings[ids].detach().float().clone()


class PromptTable(nn.Module):
    """Prompt tuning: the vectors are the parameters."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.embedding = nn.Embedding(init.shape[0], init.shape[1])
        self.embedding.weight.data.copy_(init)

    def forward(self) -> torch.Tensor:
        return self.embedding.weight


class PromptEncoder(nn.Module):
    """P-Tuning: a table fed through an MLP or a bidirectional LSTM + MLP.

    Same modules and parameter names as PEFT's ``PromptEncoder``, with one change: the encoder's output is added to
    the table (a residual) and its last layer starts at zero, so training starts from the vocab/text init instead
    of from a random MLP's output. Only the output is needed for inference; the weights are kept (in
    ``ptuning_resume.safetensors``) so training can resume, which PEFT cannot do.
    """

    def __init__(
        self, init: torch.Tensor, encoder_type: EncoderType, hidden_size: int, generator: torch.Generator | None = None
    ):
        super().__init__()
        n, token_dim = init.shape
        self.encoder_type = EncoderType(encoder_type)
        self.embedding = nn.Embedding(n, token_dim)
        self.embedding.weight.data.copy_(init)
        if self.encoder_type == EncoderType.LSTM:
            self.lstm_head = nn.LSTM(token_dim, hidden_size, num_layers=2, bidirectional=True, batch_first=True)
            self.mlp_head = nn.Sequential(
                nn.Linear(2 * hidden_size, 2 * hidden_size), nn.ReLU(), nn.Linear(2 * hidden_size, token_dim)
            )
        else:
            self.mlp_head = nn.Sequential(
                nn.Linear(token_dim, hidden_size),
                nn.ReLU(),
                nn.Linear(hidden_size, hidden_size),
                nn.ReLU(),
                nn.Linear(hidden_size, token_dim),
            )
        if generator is not None:
            reset_parameters(self, generator)
        nn.init.zeros_(self.mlp_head[-1].weight)
        nn.init.zeros_(self.mlp_head[-1].bias)

    def forward(self) -> torch.Tensor:
        x = self.embedding.weight
        if self.encoder_type == EncoderType.LSTM:
            return x + self.mlp_head(self.lstm_head(x.unsqueeze(0))[0]).squeeze(0)
        return x + self.mlp_head(x)


class DeepPrompts(nn.Module):
    """P-Tuning v2 style: a prompt table for the input of each layer after the first.

    The model overwrites the hidden states at the prompt positions before layer i with table i-1, so every layer
    sees freshly trained vectors there instead of what the previous layer made of them. With ``start_layer`` K > 1
    the tables below layer K pass no gradient: they stay at their start (what makes the states below layer K the same
    every epoch; ``PromptClassifier.lower_states``).
    """

    def __init__(self, num_layers: int, init: torch.Tensor, start_layer: int = 0):
        super().__init__()
        self.tables = nn.Parameter(init.unsqueeze(0).repeat(max(num_layers - 1, 0), 1, 1).clone())
        self.frozen = max(start_layer - 1, 0)  # tables 0..frozen-1 feed layers 1..start_layer-1

    def forward(self) -> torch.Tensor:
        if not self.frozen:
            return self.tables
        return torch.cat([self.tables[: self.frozen].detach(), self.tables[self.frozen :]])
