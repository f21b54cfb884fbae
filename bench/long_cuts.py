#!/usr/bin/env python
"""Which cut of a long text keeps the most of what a classifier needs, at what cost: a frozen-backbone probe.

    python bench/long_cuts.py --data manpages

For each cut, the frozen backbone's mean-pooled last hidden states (the features ptuning's default head reads) of
every text, then a logistic regression on the training side scored on the test side. Cuts, in tokens with the
special tokens included: ``head-L`` (the first tokens, what truncation keeps), ``headtail-L`` (the first three
quarters and the last quarter of L), ``chunks-Kx L`` (up to K consecutive chunks of L tokens, their pooled states
averaged). A probe is not a trained prompt: it ranks the cuts by the information they keep, cheaply, and the cost
column (the features' wall time) is what a forward pass over that cut costs.
"""

from __future__ import annotations

import argparse

import torch

from common import Clock, Run, backbone_path, data_args, log, result_name, setup
from corpora import NAMES, load

CUTS = ("head-64", "head-128", "head-256", "head-512", "headtail-128", "headtail-256", "chunks-4x128", "chunks-2x256")


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), with_epochs=False)
    p.add_argument("--data", choices=NAMES, default="manpages")
    p.add_argument("--cuts", nargs="+", default=list(CUTS))
    args = p.parse_args()
    setup(args)
    run = Run(args.name or result_name(f"long-cuts-{args.data}", args, sizing=("train_size", "test_size")), args)
    from transformers import AutoModel, AutoTokenizer

    split = load(args.data, args.train_size, args.test_size)
    log(f"data: {split.describe()}")
    tokenizer = AutoTokenizer.from_pretrained(backbone_path())
    model = AutoModel.from_pretrained(backbone_path()).eval()
    ids = {side: tokenizer(texts, add_special_tokens=False)["input_ids"]
           for side, texts in (("train", split.train_texts), ("test", split.test_texts))}  # fmt: skip
    lengths = sorted(len(x) + 2 for x in ids["train"])
    results = {"data": split.describe(), "train_tokens_median": lengths[len(lengths) // 2],
               "train_tokens_p90": lengths[int(0.9 * len(lengths))], "cuts": {}}  # fmt: skip
    for cut in args.cuts:
        with Clock() as clock:
            features = {side: embed(model, tokenizer, pieces(x, cut), args.batch_size) for side, x in ids.items()}
        acc = probe(features, split)
        results["cuts"][cut] = {"accuracy": round(acc, 4), "feature_wall_s": round(clock.wall, 1)}
        log(f"{cut}: accuracy {acc:.4f}, features {clock.wall:.0f} s")
        run.write(results, quiet=True)
    run.write(results)


def pieces(texts: list[list[int]], cut: str) -> list[list[list[int]]]:
    """Each text as the token pieces its cut keeps (one piece, or several chunks), without special tokens."""
    kind, size = cut.split("-")
    if kind == "chunks":
        k, length = (int(v) for v in size.split("x"))
        room = length - 2
        return [[t[i : i + room] for i in range(0, max(len(t), 1), room)][:k] for t in texts]
    room = int(size) - 2
    if kind == "head":
        return [[t[:room]] for t in texts]
    tail = room // 4
    return [[t if len(t) <= room else t[: room - tail] + t[len(t) - tail :]] for t in texts]


@torch.inference_mode()
def embed(model, tokenizer, texts: list[list[list[int]]], batch_size: int) -> torch.Tensor:
    """Mean-pooled last hidden states per piece, averaged over each text's pieces."""
    flat = [(i, piece) for i, ps in enumerate(texts) for piece in ps]
    flat.sort(key=lambda x: len(x[1]))  # batches of like lengths
    sums = torch.zeros(len(texts), model.config.hidden_size)
    counts = torch.zeros(len(texts), 1)
    for start in range(0, len(flat), batch_size):
        chunk = flat[start : start + batch_size]
        ids = [[tokenizer.cls_token_id, *p, tokenizer.sep_token_id] for _, p in chunk]  # BERT's layout
        batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        for (i, _), vector in zip(chunk, pooled):
            sums[i] += vector
            counts[i] += 1
    return sums / counts


def probe(features: dict, split) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(features["train"].numpy(), split.train_labels)
    return float(clf.score(features["test"].numpy(), split.test_labels))


if __name__ == "__main__":
    main()
