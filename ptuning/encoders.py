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
    """The starting prompt table ``[n, hidden]`` for the chosen init (vocab, text or random), drawn from
    ``generator`` (None: the process-wide generator)."""
    hidden = word_embeddings.shape[1]
    if config.init == Init.RANDOM or n == 0:
        return torch.randn(n, hidden, generator=generator)
    if config.init == Init.TEXT and config.init_text.strip():
        ids = tokenizer(config.init_text, add_special_tokens=False)["input_ids"]
        ids = (ids * (n // max(len(ids), 1) + 1))[:n]
    else:
        # Sample among the more frequent word pieces (low ids in most vocabularies skip [unused] rows in BERT's)
        lo = min(1000, word_embeddings.shape[0] // 4)
        ids = torch.randint(lo, min(word_embeddings.shape[0], 5000), (n,), generator=generator).tolist()
    return word_embeddings[torch.tensor(ids)].detach().float().clone()


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
    sees freshly trained vectors there instead of what the previous layer made of them.
    """

    def __init__(self, num_layers: int, init: torch.Tensor):
        super().__init__()
        self.tables = nn.Parameter(init.unsqueeze(0).repeat(max(num_layers - 1, 0), 1, 1).clone())

    def forward(self) -> torch.Tensor:
        return self.tables
