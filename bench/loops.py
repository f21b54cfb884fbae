"""Training and evaluation loops the benchmarks share: ours (``ptuning.train``) and plain Hugging Face models.

Ours runs through ``ptuning.train.train`` (what ``python -m ptuning train`` runs) with callbacks that time every
step, or, with ``impl="local"`` (``--ours local``), through a bare loop over ``ptuning.model`` (tokenise once,
length-grouped batches, AdamW over the adapter's parameters, the library's learning-rate schedule; no extras), to
see what the trainer's bookkeeping costs. Hugging Face models (full fine-tuning, PEFT) train in a plain torch loop:
shuffled batches padded by ``DataCollatorWithPadding``, as in PEFT's examples.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from common import LABELS, Clock


# --------------------------------------------------------------------------------------------- ours
@dataclass
class StepLog:
    """What one training run did, step by step: end time of each step, batch shape, evaluations."""

    start: float = 0.0
    start_cpu: float = 0.0
    step_end: list[float] = field(default_factory=list)
    step_cpu: list[float] = field(default_factory=list)  # process CPU time (all threads) at each step end
    shapes: list[tuple[int, int]] = field(default_factory=list)  # [B, L] of each batch the model computed
    real_tokens: list[int] = field(default_factory=list)  # non-padding positions (prompt included) per batch
    evals: list[dict] = field(default_factory=list)  # step, accuracy, eval seconds, time of evaluation end

    def begin(self) -> None:
        self.start, self.start_cpu = time.perf_counter(), time.process_time()

    def step(self) -> None:
        self.step_end.append(time.perf_counter())
        self.step_cpu.append(time.process_time())

    def window(self, skip: int = 0) -> tuple[int, float, float]:
        """(steps, wall s, CPU s) from the end of step ``skip`` to the end of the last step, evaluations excluded."""
        n = len(self.step_end)
        if n <= skip:
            return 0, 0.0, 0.0
        t0 = self.start if skip == 0 else self.step_end[skip - 1]
        c0 = self.start_cpu if skip == 0 else self.step_cpu[skip - 1]
        evals = [e for e in self.evals if t0 < e["end"] <= self.step_end[-1]]
        wall = self.step_end[-1] - t0 - sum(e["seconds"] for e in evals)
        cpu = self.step_cpu[-1] - c0 - sum(e.get("cpu_seconds", 0.0) for e in evals)
        return n - skip, wall, cpu

    def epoch_walls(self, steps_per_epoch: int) -> list[float]:
        """Training seconds of each (complete or last partial) epoch, evaluations excluded."""
        out, t0 = [], self.start
        for end in range(steps_per_epoch, len(self.step_end) + steps_per_epoch, steps_per_epoch):
            t1 = self.step_end[min(end, len(self.step_end)) - 1]
            # the evaluation after the previous epoch ends inside this window: take it out
            out.append(t1 - t0 - sum(e["seconds"] for e in self.evals if t0 < e["end"] <= t1))
            t0 = t1
        return out


def ours_dataset(texts: list[str], labels: list[int], names: list[str] | None = None):
    from ptuning.data import Dataset

    return Dataset(texts=list(texts), labels=list(labels), label_names=list(names or LABELS))


def prompt_length(clf) -> int:
    """Extra positions the adapter adds to a text: prompt vectors plus a template's literal words (at most)."""
    literals = sum(
        len(clf.backbone.tokenizer(s.literal, add_special_tokens=False)["input_ids"])
        for s in clf.placement.spans
        if s.kind == "literal"
    )
    return clf.placement.num_prompt + literals


def train_ours(
    clf,
    train_texts: list[str],
    train_labels: list[int],
    eval_texts: list[str],
    eval_labels: list[int],
    *,
    epochs: int,
    batch_size: int,
    max_length: int,
    seed: int,
    lr: float | None = None,
    head_lr: float | None = None,
    max_steps: int | None = None,
    eval_each_epoch: bool = True,
    impl: str = "train",
) -> tuple[StepLog, dict]:
    """Train ``clf`` in place; returns the step log and a summary (best accuracy, history).

    ``max_length`` counts the text's tokens (special tokens included), as a Hugging Face tokenizer's does; the
    adapter's prompt comes on top, so the text is cut at the same place as on the baselines' side. With
    ``eval_each_epoch=False`` the only evaluation runs after the last step (outside any timed window).
    """
    full_length = max_length + prompt_length(clf)
    if impl == "train":
        return _train_with_ptuning(
            clf, train_texts, train_labels, eval_texts, eval_labels, epochs, batch_size, full_length, seed,
            lr, head_lr, max_steps, eval_each_epoch,
        )  # fmt: skip
    return _train_local(
        clf, train_texts, train_labels, eval_texts, eval_labels, epochs, batch_size, full_length, seed,
        lr, head_lr, max_steps, eval_each_epoch,
    )  # fmt: skip


def _record_collate(clf, log: StepLog) -> None:
    """Wrap ``clf.collate`` so every training batch's shape and real-token count lands in ``log``."""
    inner = type(clf).collate.__get__(clf)

    def collate(examples):
        batch = inner(examples)
        if clf.training:  # evaluation batches are not training steps
            log.shapes.append(tuple(batch["input_ids"].shape))
            log.real_tokens.append(int(batch["attention_mask"].sum()))
        return batch

    clf.collate = collate  # an instance attribute: the shared class stays untouched


def _train_with_ptuning(
    clf, tr_x, tr_y, ev_x, ev_y, epochs, batch_size, max_length, seed, lr, head_lr, max_steps, eval_each_epoch
):
    from ptuning.train import Callback, TrainingArguments, train

    log = StepLog()
    _record_collate(clf, log)
    steps_per_epoch = math.ceil(len(tr_x) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)

    class Timing(Callback):
        def on_train_begin(self, state):
            log.begin()

        def on_step_end(self, state):
            log.step()

        def on_evaluate(self, state, metrics):
            end, cpu = time.perf_counter(), time.process_time()
            log.evals.append({
                "step": state.step, "accuracy": metrics.get("accuracy"), "seconds": end - log.step_end[-1],
                "cpu_seconds": cpu - log.step_cpu[-1], "end": end,
            })  # fmt: skip

    args = TrainingArguments(
        epochs=epochs,
        lr=lr,
        head_lr=head_lr,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        patience=0,  # no early stop: every epoch is measured
        eval_sample=0,  # on the whole test split
        # evaluate once per epoch, or only after the last step (its time is then outside every window)
        eval_steps=steps_per_epoch if eval_each_epoch else epochs * steps_per_epoch + 1,
        device=str(clf.device),
    )
    cancel = (lambda: len(log.step_end) >= total) if max_steps is not None else None
    result = train(
        ours_dataset(tr_x, tr_y, clf.config.labels), eval_data=ours_dataset(ev_x, ev_y, clf.config.labels),
        model=clf, args=args, callbacks=[Timing()],
        cancel=cancel,
    )  # fmt: skip
    s = result.state
    summary = {
        "impl": "ptuning.train.train",
        "lr": result.model.info["training"]["learning_rate"],
        "head_lr": result.model.info["training"]["head_learning_rate"],
        "warmup_ratio": args.warmup_ratio,
        "max_grad_norm": args.max_grad_norm,
        "best_accuracy": result.metrics.get("accuracy"),
        "best_step": s.best_step,
        "steps_per_epoch": steps_per_epoch,
        "history": [{"step": h["step"], "epoch": h["epoch"], "accuracy": h.get("accuracy"), "val_loss": h["val_loss"]}
                    for h in s.history],
    }  # fmt: skip
    return log, summary


def _train_local(
    clf, tr_x, tr_y, ev_x, ev_y, epochs, batch_size, max_length, seed, lr, head_lr, max_steps, eval_each_epoch
):
    """A bare loop beside ``ptuning.train``: the same batching, AdamW, schedule and clipping; no extras."""
    from ptuning.batching import length_grouped_batches
    from ptuning.train import HEAD_LR, PROMPT_LR, lr_schedule

    log = StepLog()
    _record_collate(clf, log)

    lr = lr or PROMPT_LR[clf.config.method]  # ptuning.train's defaults
    head_lr = head_lr or HEAD_LR
    examples = clf.encode(tr_x, max_length=max_length).examples
    targets = torch.tensor(tr_y, device=clf.device)
    prompt = [p for m in (clf.prompt, clf.deep) if m is not None for p in m.parameters() if p.requires_grad]
    head = [p for p in clf.head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": prompt, "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.0)
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    warmup = int(0.1 * epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(epochs * steps_per_epoch, warmup))
    history, step = [], 0
    log.begin()
    for epoch in range(epochs):
        for idx in length_grouped_batches([len(e.input_ids) for e in examples], batch_size, True, seed + epoch):
            if step >= total:
                break
            clf.train()
            loss = F.cross_entropy(clf(**clf.collate([examples[i] for i in idx])), targets[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            log.step()
        if eval_each_epoch or step >= total:
            t0, c0 = time.perf_counter(), time.process_time()
            acc = evaluate_ours(clf, ev_x, ev_y, max_length)
            end = time.perf_counter()
            log.evals.append({"step": step, "accuracy": acc, "seconds": end - t0, "cpu_seconds": time.process_time() - c0, "end": end})
            history.append({"step": step, "epoch": step / steps_per_epoch, "accuracy": acc})
        if step >= total:
            break
    best = max(history, key=lambda h: h["accuracy"]) if history else None
    return log, {
        "impl": "local loop over ptuning.model",
        "lr": lr, "head_lr": head_lr, "warmup_ratio": 0.1, "max_grad_norm": 1.0,
        "best_accuracy": best["accuracy"] if best else None, "best_step": best["step"] if best else None,
        "steps_per_epoch": steps_per_epoch, "history": history,
    }  # fmt: skip


@torch.inference_mode()
def evaluate_ours(clf, texts: list[str], labels: list[int], max_length: int, batch_size: int = 64) -> float:
    from ptuning.batching import length_grouped_batches

    clf.eval()
    examples = clf.encode(texts, max_length=max_length).examples
    correct = 0
    for idx in length_grouped_batches([len(e.input_ids) for e in examples], batch_size):
        pred = clf(**clf.collate([examples[i] for i in idx])).argmax(-1).tolist()
        correct += sum(int(p == labels[i]) for p, i in zip(pred, idx))
    return correct / len(labels)


# --------------------------------------------------------------------------------------------- Hugging Face
def hf_features(tokenizer, texts: list[str], labels: list[int], max_length: int) -> list[dict]:
    """Tokenised once, unpadded: one dict per example, as a ``datasets.map(tokenize)`` would give."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    return [{**{k: enc[k][i] for k in keys}, "labels": int(labels[i])} for i in range(len(texts))]


def hf_batches(features: list[dict], batch_size: int, seed: int, group_by_length: bool = False) -> list[list[int]]:
    """Shuffled batches of indices (``RandomSampler`` order), or length-grouped ones as ptuning's training uses."""
    if group_by_length:
        from ptuning.batching import length_grouped_batches

        return length_grouped_batches([len(f["input_ids"]) for f in features], batch_size, True, seed)
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def linear_schedule(optimizer, total_steps: int, warmup_ratio: float):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)


def train_hf_epoch(
    model, optimizer, scheduler, collator, features, batch_size, seed, *, group_by_length=False, max_grad_norm=1.0,
    extra_positions: int = 0, bf16: bool = False,
) -> dict:
    """One epoch of a Hugging Face model (plain or PEFT) in train mode; ``extra_positions``: PEFT's virtual tokens;
    ``bf16``: forward and backward under CPU autocast (the weights and the optimizer stay fp32)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n = tokens = real = 0
    with Clock() as clock:
        for idx in hf_batches(features, batch_size, seed, group_by_length):
            batch = collator([features[i] for i in idx])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(**batch)
            out.loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            b, L = batch["input_ids"].shape
            n += b
            tokens += b * (L + extra_positions)
            real += int(batch["attention_mask"].sum()) + b * extra_positions
    return {"wall_s": clock.wall, "cpu_s": clock.cpu, "examples": n, "examples_per_s": n / clock.wall,
            "positions_computed": tokens, "real_positions": real}  # fmt: skip


@torch.inference_mode()
def evaluate_hf(model, collator, features, batch_size: int = 64, bf16: bool = False) -> tuple[float, float]:
    """(accuracy, seconds) with batches sorted by length (the fastest order; only the result matters)."""
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    correct = 0
    with Clock() as clock:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collator([features[i] for i in idx])
            labels = batch.pop("labels")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(features), clock.wall
