"""Prototype (issue 22): deep prompts that are trained only from layer K up, over lower-layer states computed once.

Lower prompt tables (and the input prompt) stay frozen at their init, so what enters layer K is the same every epoch:
it is computed once per text (inference mode) and reused; a training step runs layers K.. only. Optionally BitFit-style
offsets (Linear biases, LayerNorm weight/bias) on layers K.. are trained too. Prints test accuracy after each epoch and
the seconds, so a setting's accuracy-per-second can be read off. One JSON line per run on stdout at the end.

    python bench/proto_late.py --start 3 --bitfit --epochs 4 --lr 3e-2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import corpora  # noqa: E402
from ptuning import PromptClassifier  # noqa: E402
from ptuning.model import forward_mixed  # noqa: E402
from ptuning.seeding import run_generator  # noqa: E402


class _Stop(Exception):
    pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="movie")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--start", type=int, default=0, help="first layer whose prompt table trains (0: all, today)")
    p.add_argument("--bitfit", action="store_true")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--bias-lr", type=float, default=None)
    p.add_argument("--head-lr", type=float, default=1e-2)
    p.add_argument("--tokens", type=int, default=5)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    t0 = time.perf_counter()
    split = corpora.load(args.data, args.train_size, args.test_size)
    names = split.label_names or ["negative", "positive"]
    gen = run_generator(args.seed)
    clf = PromptClassifier(labels=names, method="deep", num_virtual_tokens=args.tokens, generator=gen)
    bb = clf.backbone
    layers, k = bb.layers, args.start
    tr = clf.encode(split.train_texts, None, args.max_length).examples
    te = clf.encode(split.test_texts, None, args.max_length).examples
    y_tr = torch.tensor(split.train_labels)
    y_te = torch.tensor(split.test_labels)

    # what trains
    clf.prompt.requires_grad_(k == 0)
    if k > 0:
        keep = torch.zeros_like(clf.deep.tables)
        keep[k - 1 :] = 1
        clf.deep.tables.register_hook(lambda g: g * keep)
    offsets = nn.ParameterList()
    hooks = []
    if args.bitfit:
        for layer in list(layers)[k:]:
            for m in layer.modules():
                if isinstance(m, nn.Linear):
                    o = nn.Parameter(torch.zeros(m.out_features))
                    offsets.append(o)
                    hooks.append(m.register_forward_hook(lambda mod, i, out, o=o: out + o))
                elif isinstance(m, nn.LayerNorm):
                    dw, db = nn.Parameter(torch.zeros(m.normalized_shape)), nn.Parameter(torch.zeros(m.normalized_shape))
                    offsets.extend([dw, db])
                    hooks.append(m.register_forward_hook(
                        lambda mod, i, out, dw=dw, db=db: out + (out - mod.bias) / mod.weight * dw + db))

    # lower-layer states, once per text
    cache = {}

    def lower_states(examples, key):
        if k == 0:
            return None
        out = []
        for s in range(0, len(examples), 64):
            part = examples[s : s + 64]
            batch = clf.collate(part)
            got = {}

            def grab(mod, i, o):
                got["h"] = o if isinstance(o, torch.Tensor) else o[0]
                raise _Stop

            h = layers[k - 1].register_forward_hook(grab)
            try:
                with torch.inference_mode():
                    forward_mixed([clf], torch.zeros(len(part), dtype=torch.long), batch)
            except _Stop:
                pass
            finally:
                h.remove()
            for j, e in enumerate(part):
                out.append(got["h"][j, : len(e.input_ids)].clone())
        cache[key] = out
        return out

    t_cache = time.perf_counter()
    lower_states(tr, "tr")
    lower_states(te, "te")
    t_cache = time.perf_counter() - t_cache

    current = {}
    originals = {}

    def skipping(j):
        orig = layers[j].forward

        def fwd(hidden_states, *a, **kw):
            if "states" not in current:
                return orig(hidden_states, *a, **kw)
            if j == k - 1:
                return current["states"]
            return hidden_states

        return orig, fwd

    for j in range(k):
        originals[j], layers[j].forward = skipping(j)

    def logits_of(examples, idx, states):
        batch = clf.collate([examples[i] for i in idx])
        if states is not None:
            L = batch["input_ids"].shape[1]
            st = torch.zeros(len(idx), L, bb.hidden_size)
            for r, i in enumerate(idx):
                st[r, : states[i].shape[0]] = states[i]
            current["states"] = st
        try:
            return forward_mixed([clf], torch.zeros(len(idx), dtype=torch.long), batch)
        finally:
            current.pop("states", None)

    def accuracy():
        clf.eval()
        correct = 0
        with torch.inference_mode():
            order = sorted(range(len(te)), key=lambda i: len(te[i].input_ids))
            for s in range(0, len(order), 128):
                idx = order[s : s + 128]
                pred = logits_of(te, idx, cache.get("te")).argmax(-1)
                correct += int((pred == y_te[idx]).sum())
        return correct / len(te)

    prompt_params = [p for p in list(clf.prompt.parameters()) + [clf.deep.tables] if p.requires_grad]
    groups = [{"params": prompt_params, "lr": args.lr}, {"params": list(clf.head.parameters()), "lr": args.head_lr}]
    if len(offsets):
        groups.append({"params": list(offsets), "lr": args.bias_lr or args.lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(tr) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warm = int(args.warmup * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / (warm + 1) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    g = torch.Generator().manual_seed(args.seed)
    curve = []
    t_train = time.perf_counter()
    for epoch in range(args.epochs):
        clf.train()
        perm = torch.randperm(len(tr), generator=g).tolist()
        # group by length within chunks of 50 batches, like length_grouped_batches
        chunk = args.batch_size * 50
        batches = []
        for s in range(0, len(perm), chunk):
            part = sorted(perm[s : s + chunk], key=lambda i: len(tr[i].input_ids))
            batches += [part[b : b + args.batch_size] for b in range(0, len(part), args.batch_size)]
        for idx in batches:
            loss = nn.functional.cross_entropy(logits_of(tr, idx, cache.get("tr")), y_tr[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_([q for gr in groups for q in gr["params"]], 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        acc = accuracy()
        curve.append({"epoch": epoch + 1, "acc": acc, "s": round(time.perf_counter() - t0, 1)})
        print(f"epoch {epoch + 1}: acc {acc:.4f}  at {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    trainable = sum(q.numel() for gr in groups for q in gr["params"])
    print(json.dumps({**vars(args), "curve": curve, "cache_s": round(t_cache, 1),
                      "train_s": round(time.perf_counter() - t_train, 1), "total_s": round(time.perf_counter() - t0, 1),
                      "trainable": trainable, "best": max(c["acc"] for c in curve), "last": curve[-1]["acc"]}))


if __name__ == "__main__":
    main()
