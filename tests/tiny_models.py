"""Tiny random backbones of every supported family, saved as local directories (milliseconds to build).

Encoders reuse the embedded MiniLM's WordPiece tokenizer ([CLS] ... [SEP]); decoders get the same vocabulary
without special tokens (GPT-2 style) or with a leading BOS (Llama style).
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as tf
from tokenizers import Tokenizer, processors

from ptuning.backbones import embedded_path

VOCAB = 30522
_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


def _config(family: str):
    if family == "bert":
        return tf.BertConfig(vocab_size=VOCAB, max_position_embeddings=128, **_SMALL)
    if family == "roberta":
        return tf.RobertaConfig(vocab_size=VOCAB, max_position_embeddings=130, pad_token_id=0, **_SMALL)
    if family == "distilbert":
        return tf.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                                   max_position_embeddings=128, pad_token_id=0)
    if family == "deberta-v2":
        return tf.DebertaV2Config(vocab_size=VOCAB, max_position_embeddings=128, type_vocab_size=0,
                                  relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
                                  pooler_hidden_size=32, **_SMALL)
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                             bos_token_id=102, eos_token_id=102)
    if family == "llama":
        return tf.LlamaConfig(vocab_size=VOCAB, max_position_embeddings=128, num_key_value_heads=1,
                              head_dim=16, bos_token_id=101, eos_token_id=102, **_SMALL)
    raise ValueError(family)


FAMILIES = ("bert", "roberta", "distilbert", "deberta-v2", "gpt2", "llama")


def build_tiny(family: str, directory: Path, seed: int = 0) -> str:
    """Save a tiny random ``family`` classifier backbone and a tokenizer into ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = tf.AutoModelForSequenceClassification.from_config(_config(family))
    model.save_pretrained(directory)
    base = tf.AutoTokenizer.from_pretrained(embedded_path())
    if family in ("gpt2", "llama"):
        raw = Tokenizer.from_file(str(Path(embedded_path()) / "tokenizer.json"))
        if family == "gpt2":
            raw.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")
        else:
            raw.post_processor = processors.TemplateProcessing(
                single="[CLS] $A", pair="[CLS] $A $B:1", special_tokens=[("[CLS]", 101)]
            )
        tok = tf.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="[SEP]", unk_token="[UNK]",
                                         bos_token="[CLS]", model_max_length=128)
        tok.padding_side = "left"
        tok.save_pretrained(directory)
    else:
        base.model_max_length = 128
        base.save_pretrained(directory)
    return str(directory)
