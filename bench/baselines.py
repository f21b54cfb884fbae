#!/usr/bin/env python
"""Accuracy baselines on a benchmark split (``--data``: movie polarity by default), to set ptuning's numbers against.

    python bench/baselines.py                                   # everything, full split (est. 70-80 min on 2 idle cores)
    python bench/baselines.py --train-size 256 --test-size 256 --epochs 1      # smoke test
    python bench/baselines.py --methods head-cls logreg-mean peft-p-tuning

Methods (all on all-MiniLM-L6-v2, batch 32, max 64 tokens, linear schedule with 10% warm-up, clipping at 1.0):
- ``head-cls``: frozen backbone, only the model's own classifier trained, on BERT's pooled [CLS]
  (AutoModelForSequenceClassification with everything but ``classifier`` frozen);
- ``head-mean``: frozen backbone, a linear head (dropout 0.1) on mean-pooled last hidden states;
- ``logreg-mean``: scikit-learn's LogisticRegression on the same mean-pooled features (one fit, no epochs);
- ``full-ft``: full fine-tuning, AdamW lr 5e-5, 3 epochs (``--freeze-embeddings``: all but the embeddings);
- ``peft-lora``: PEFT LoRA (rank 8, alpha 16, dropout 0.1, on query and value; the classifier trained), lr 5e-4,
  5 epochs: what a user picks instead of a prompt adapter;
- ``peft-p-tuning``: PEFT P_TUNING, 20 virtual tokens, MLP encoder hidden 128, lr 3e-3;
- ``peft-prompt``: PEFT PROMPT_TUNING, 20 virtual tokens, random init, one run per ``--lr-prompt`` (1e-2, 3e-2).

The frozen-backbone heads read features computed once (backbone in eval mode, as ptuning's backbone always is);
their "epoch" is an epoch of the head alone. Full fine-tuning and PEFT train in a plain torch loop in train mode
(dropout on, as in PEFT's examples), batches shuffled and padded per batch (``DataCollatorWithPadding``). The
test split is the validation set: the best accuracy over epochs and the epoch it came at are reported.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from common import (
    Clock, Run, backbone_path, data_args, hf_classifier, log, result_name, seed_everything, setup,
)  # fmt: skip
from corpora import NAMES, load
from loops import evaluate_hf, hf_features, linear_schedule, train_hf_epoch

from ptuning.train import HEAD_LR

METHODS = ("head-cls", "head-mean", "logreg-mean", "full-ft", "peft-lora", "peft-p-tuning", "peft-prompt")
DEFAULT_EPOCHS = {"full-ft": 3}  # the others: 5
NUM_LABELS = 2  # set from the data set in main()


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), epochs=None)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--lr-full", type=float, default=5e-5)
    p.add_argument("--lr-p-tuning", type=float, default=3e-3)
    p.add_argument("--lr-lora", type=float, default=5e-4)
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (alpha = 2 r, dropout 0.1)")
    p.add_argument("--lora-targets", nargs="+", default=["query", "value"],
                   help="the modules LoRA adapts (PEFT's target_modules; all-linear: every linear layer but the output)")
    p.add_argument("--lora-layers", type=int, nargs="+", default=None,
                   help="only these transformer layers (PEFT's layers_to_transform; default: all)")
    p.add_argument("--data", choices=NAMES, default="movie")
    p.add_argument("--lr-prompt", type=float, nargs="+", default=[1e-2, 3e-2])
    p.add_argument("--head-lr", type=float, default=HEAD_LR, help="the frozen-backbone heads (ptuning's head_lr)")
    p.add_argument("--num-virtual-tokens", type=int, default=20)
    p.add_argument("--encoder-hidden-size", type=int, default=128)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--group-by-length", action="store_true", help="length-grouped batches (default: shuffled)")
    p.add_argument("--freeze-embeddings", action="store_true",
                   help="full-ft: the embeddings stay frozen (what full fine-tuning gains from them)")
    p.add_argument("--bf16", action="store_true", help="full-ft, LoRA and PEFT runs under CPU bf16 autocast")
    p.epilog = "--epochs (default: 3 for full-ft, 5 for the others) applies to every method when given."
    args = p.parse_args()
    setup(args)
    run = Run(result_name("baselines" + ("" if args.data == "movie" else f"-{args.data}"), args), args)

    from transformers import AutoTokenizer, DataCollatorWithPadding

    path = backbone_path()
    split = load(args.data, args.train_size, args.test_size)
    global NUM_LABELS
    NUM_LABELS = len(split.label_names)
    log(f"data: {split.describe()}")
    tokenizer = AutoTokenizer.from_pretrained(path)
    collator = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    train = hf_features(tokenizer, split.train_texts, split.train_labels, args.max_length)
    test = hf_features(tokenizer, split.test_texts, split.test_labels, args.max_length)
    results: dict = {"data": split.describe()}

    frozen = [m for m in ("head-cls", "head-mean", "logreg-mean") if m in args.methods]
    if frozen:
        results.update(frozen_heads(frozen, path, collator, train, test, split, args))
    if "full-ft" in args.methods:
        results["full-ft"] = hf_run("full-ft", path, collator, train, test, args, lr=args.lr_full)
    if "peft-lora" in args.methods:
        results["peft-lora"] = hf_run("peft-lora", path, collator, train, test, args, lr=args.lr_lora)
    if "peft-p-tuning" in args.methods:
        results["peft-p-tuning"] = hf_run("peft-p-tuning", path, collator, train, test, args, lr=args.lr_p_tuning)
    if "peft-prompt" in args.methods:
        for lr in args.lr_prompt:
            results[f"peft-prompt-lr{lr:g}"] = hf_run("peft-prompt", path, collator, train, test, args, lr=lr)
    run.write(results)
    print_table(results)


def epochs_for(method: str, args) -> int:
    return args.epochs or DEFAULT_EPOCHS.get(method, 5)


# --------------------------------------------------------------------------------------------- frozen heads
def load_classifier(path: str, seed: int):
    return hf_classifier(NUM_LABELS, seed)  # seeded: the new classifier's init


@torch.inference_mode()
def features(model, collator, feats: list[dict], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled [CLS] (BERT's pooler) and mean-pooled last hidden states of the frozen backbone, in input order."""
    model.eval()
    cls_out, mean_out = torch.zeros(len(feats), model.config.hidden_size), torch.zeros(len(feats), model.config.hidden_size)
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collator([feats[i] for i in idx])
        batch.pop("labels")
        out = model.bert(**batch)
        m = batch["attention_mask"][..., None].float()
        cls_out[idx] = out.pooler_output
        mean_out[idx] = (out.last_hidden_state * m).sum(1) / m.sum(1)
    return cls_out, mean_out


def frozen_heads(methods, path, collator, train, test, split, args) -> dict:
    model = load_classifier(path, args.seed)
    log("frozen backbone: computing features once ...")
    with Clock() as c_train:
        tr_cls, tr_mean = features(model, collator, train, 64)
    with Clock() as c_test:
        te_cls, te_mean = features(model, collator, test, 64)
    extraction = {
        "train_wall_s": round(c_train.wall, 2),
        "train_examples_per_s": round(len(train) / c_train.wall, 1),
        "test_wall_s": round(c_test.wall, 2),
        "note": "one forward pass of the frozen backbone (eval mode, length-sorted batches of 64) over each split",
    }
    y_tr, y_te = torch.tensor(split.train_labels), torch.tensor(split.test_labels)
    out = {}
    if "head-cls" in methods:
        head = nn.Sequential(model.dropout, model.classifier)  # BertForSequenceClassification's own head
        out["head-cls"] = train_head(head, tr_cls, y_tr, te_cls, y_te, epochs_for("head-cls", args), args)
        out["head-cls"]["feature_extraction"] = extraction
    if "head-mean" in methods:
        seed_everything(args.seed)
        linear = nn.Linear(model.config.hidden_size, NUM_LABELS)
        nn.init.normal_(linear.weight, std=0.02)
        nn.init.zeros_(linear.bias)
        head = nn.Sequential(nn.Dropout(0.1), linear)
        out["head-mean"] = train_head(head, tr_mean, y_tr, te_mean, y_te, epochs_for("head-mean", args), args)
        out["head-mean"]["feature_extraction"] = extraction
    if "logreg-mean" in methods:
        from sklearn.linear_model import LogisticRegression

        with Clock() as c:
            lr = LogisticRegression(max_iter=2000).fit(tr_mean.numpy(), y_tr.numpy())
        acc = float((lr.predict(te_mean.numpy()) == y_te.numpy()).mean())
        out["logreg-mean"] = {"best_accuracy": acc, "fit_wall_s": round(c.wall, 2), "feature_extraction": extraction,
                              "settings": "sklearn LogisticRegression(max_iter=2000), default C=1.0"}  # fmt: skip
        log(f"logreg-mean: accuracy {acc:.4f}")
    return out


def train_head(head, x_tr, y_tr, x_te, y_te, epochs: int, args) -> dict:
    params = [p for p in head.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.head_lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(x_tr) / args.batch_size)
    sched = linear_schedule(opt, steps, args.warmup_ratio)
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(1, epochs + 1):
        head.train()
        with Clock() as c:
            for idx in torch.randperm(len(x_tr), generator=gen).split(args.batch_size):
                loss = nn.functional.cross_entropy(head(x_tr[idx]), y_tr[idx])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
        head.eval()
        with torch.inference_mode():
            acc = float((head(x_te).argmax(-1) == y_te).float().mean())
        history.append({"epoch": epoch, "accuracy": acc, "train_wall_s": round(c.wall, 3)})
    return summarise(history, {"lr": args.head_lr, "epochs": epochs})


# --------------------------------------------------------------------------------------------- HF loops
def _lora_targets(names: list[str]) -> list[str] | str:
    return "all-linear" if names == ["all-linear"] else names


def build(method: str, path: str, args, pad_id: int):
    """The model to train and how many positions PEFT adds to every sequence."""
    model = load_classifier(path, args.seed)
    model.config.pad_token_id = pad_id
    if method == "full-ft":
        if args.freeze_embeddings:
            model.base_model.embeddings.requires_grad_(False)
        return model, 0
    from peft import LoraConfig, PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model

    if method == "peft-lora":  # what a user picks instead of a prompt: low-rank updates of attention, head trained
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=args.lora_r, lora_alpha=2 * args.lora_r,
                            lora_dropout=0.1, target_modules=_lora_targets(args.lora_targets),
                            layers_to_transform=args.lora_layers)  # fmt: skip
        seed_everything(args.seed)
        return get_peft_model(model, config), 0
    common = {"task_type": TaskType.SEQ_CLS, "num_virtual_tokens": args.num_virtual_tokens}
    if method == "peft-p-tuning":
        config = PromptEncoderConfig(**common, encoder_hidden_size=args.encoder_hidden_size)
    else:
        config = PromptTuningConfig(**common)
    seed_everything(args.seed)
    return get_peft_model(model, config), args.num_virtual_tokens


def hf_run(method: str, path: str, collator, train, test, args, lr: float) -> dict:
    model, extra = build(method, path, args, collator.tokenizer.pad_token_id)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    epochs = epochs_for(method, args)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(train) / args.batch_size)
    sched = linear_schedule(opt, steps, args.warmup_ratio)
    history = []
    log(f"{method} lr {lr:g}: {trainable:,} trainable parameters, {epochs} epochs")
    for epoch in range(1, epochs + 1):
        stats = train_hf_epoch(
            model, opt, sched, collator, train, args.batch_size, args.seed + epoch,
            group_by_length=args.group_by_length, max_grad_norm=args.max_grad_norm, extra_positions=extra,
            bf16=args.bf16,
        )  # fmt: skip
        acc, eval_s = evaluate_hf(model, collator, test, bf16=args.bf16)
        history.append({
            "epoch": epoch, "accuracy": acc, "train_wall_s": round(stats["wall_s"], 2),
            "train_cpu_s": round(stats["cpu_s"], 2), "examples_per_s": round(stats["examples_per_s"], 2),
            "padding_fraction": round(1 - stats["real_positions"] / stats["positions_computed"], 4),
            "eval_wall_s": round(eval_s, 2),
        })  # fmt: skip
        log(f"  epoch {epoch}: accuracy {acc:.4f}, {stats['wall_s']:.1f} s, {stats['examples_per_s']:.1f} ex/s")
    return summarise(history, {"lr": lr, "epochs": epochs, "trainable_parameters": trainable})


def summarise(history: list[dict], settings: dict) -> dict:
    best = max(history, key=lambda h: h["accuracy"])  # first epoch among ties
    walls = [h["train_wall_s"] for h in history]
    out = {"best_accuracy": best["accuracy"], "best_epoch": best["epoch"], "mean_epoch_wall_s": round(sum(walls) / len(walls), 2)}
    if "examples_per_s" in history[0]:
        out["mean_examples_per_s"] = round(sum(h["examples_per_s"] for h in history) / len(history), 2)
    return {**out, **settings, "history": history}


def print_table(results: dict) -> None:
    print(f"\n{'method':<22} {'best acc':>8} {'epoch':>5} {'s/epoch':>8} {'ex/s':>7}")
    for name, r in results.items():
        if name == "data":
            continue
        print(f"{name:<22} {r['best_accuracy']:>8.4f} {str(r.get('best_epoch', '-')):>5} "
              f"{str(r.get('mean_epoch_wall_s', '-')):>8} {str(r.get('mean_examples_per_s', '-')):>7}")  # fmt: skip


if __name__ == "__main__":
    main()
