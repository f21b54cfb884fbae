#!/usr/bin/env python
"""Prediction speed: PromptClassifier.predict versus the bare backbone and transformers' pipeline; mixed adapters.

    python bench/inference.py                                              # full run (est. 5 min on 2 idle cores)
    python bench/inference.py --latency-texts 20 --batch-texts 128 --mixed-sizes 8 64 --repeats 1   # smoke test

1. Single-text latency (median, p95) over ``--latency-texts`` test sentences, one call per text, the systems
   interleaved text by text so that machine load hits them alike:
   - ``bare``: AutoModelForSequenceClassification + its tokenizer under ``torch.inference_mode()`` (no prompt);
   - ``ours-default``: ``PromptClassifier.predict`` with the adapter ``train()`` makes by default (5 deep vectors at
     the start, mean pooling, rank-4 low-rank updates of every linear layer); ``ours-no-updates``: the same without
     the updates (the default before issue 22's second round); ``ours-p-tuning``: p-tuning, 20 vectors at the start,
     the backbone's [CLS] head (PEFT's layout); ``ours-offsets``: deep from layer 2 with bias offsets;
   - ``pipeline``: ``transformers.pipeline("text-classification", model=..., tokenizer=...)`` on the same model;
   - ``ours-prompt-nK`` / ``ours-deep-nK``: the default adapter (mean pooling, at the start) with K prompt vectors,
     for every K in ``--prompt-lengths`` and method in ``--length-methods``: what each prompt length costs
     (``ours-prompt-n0``, no prompt at all, is ptuning's own overhead over the bare model).
2. Batched throughput over ``--batch-texts`` texts, batch 32: the same systems, plus the bare model with its
   batches sorted by length as ``predict`` sorts them (the prompt's overhead is measured against that one).
3. Mixed adapters: k=8 adapters of different methods and placements on one backbone; one ``predict_mixed`` call
   over N texts (text i to adapter i mod 8) versus 8 ``predict`` calls, each over its own share; and, as the
   ceiling no mixing scheme can beat, one adapter's single ``predict`` call over the same N texts. With
   ``--mixed-lora R`` every one of the 8 also has its own rank-R low-rank updates (each row of a mixed batch then
   multiplies by its own adapter's matrices).
Adapters are untrained (speed does not depend on the weights). The bare model runs in ptuning's precision
(``PTUNING_PRECISION``: bf16 autocast where the CPU has bf16 instructions); the pipeline in fp32. Texts are cut at 64 tokens on the bare/pipeline
side; ``predict`` cuts only at the backbone's limit (no test sentence is longer than 64 tokens, so both see the same).
"""

from __future__ import annotations

import argparse
import time

import torch

from common import LABELS, Clock, Run, backbone_path, data_args, hf_classifier, log, median, movie_split, percentile, result_name, setup

MIXED = [  # (method, placement, pooling)
    ("prompt", "start", "mean"),
    ("prompt", "middle", "mean"),
    ("prompt", "end", "model"),
    ("p-tuning", "start", "model"),
    ("p-tuning", "[P:10] {text} [P:10]", "mean"),
    ("deep", "start", "mean"),
    ("deep", "end", "model"),
    ("prompt", "Review: {text} [P:5] Sentiment:", "last"),
]


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), with_epochs=False)
    p.add_argument("--latency-texts", type=int, default=200)
    p.add_argument("--batch-texts", type=int, default=None, help="texts for the batched runs (default: the test split)")
    p.add_argument("--mixed-sizes", type=int, nargs="+", default=[8, 64, 256, 1024], help="N texts per mixed run")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats of each batched/mixed measurement")
    p.add_argument("--prompt-lengths", type=int, nargs="*", default=[0, 5, 10, 20], help="extra adapters, K vectors each")
    p.add_argument("--length-methods", nargs="*", default=["prompt", "deep"], choices=("prompt", "p-tuning", "deep"))
    p.add_argument("--mixed-lora", type=int, default=0, metavar="R", help="the mixed adapters with rank-R updates too")
    args = p.parse_args()
    setup(args)
    name = result_name("inference", args, ("latency_texts", "batch_texts", "repeats"), {"latency_texts": 200, "repeats": 3})
    run = Run(name, args)

    split = movie_split(None, args.test_size)
    texts = split.test_texts
    systems = build_systems(args)
    results = {
        "latency": latency(systems, texts[: args.latency_texts]),
        "batched": batched(systems, texts[: args.batch_texts], args),
        "mixed": mixed(texts, args),
    }
    lat, bat = results["latency"], results["batched"]
    ours = [k for k in systems if k.startswith("ours-")]
    results["prompt_overhead_percent"] = {
        "latency_median": {k: pct(lat[k]["median_ms"], lat["bare"]["median_ms"]) for k in ours},
        "batched_vs_bare_sorted": {k: pct(bat["bare-sorted"]["examples_per_s"], bat[k]["examples_per_s"]) for k in ours},
        "note": "time per text relative to the bare model without a prompt (latency: median; batched: 1/throughput)",
    }
    run.write(results)
    print("\nsingle text (ms):      median    p95")
    for k, v in lat.items():
        print(f"  {k:<18} {v['median_ms']:>8.2f} {v['p95_ms']:>8.2f}")
    print("batch 32 (texts/s):")
    for k, v in bat.items():
        print(f"  {k:<18} {v['examples_per_s']:>8.1f}")
    print("mixed, 8 adapters:  N   one call (s)  8 calls (s)  speedup  one adapter, one call (s)  ceiling")
    for r in results["mixed"]["runs"]:
        print(f"  {r['texts']:>17} {r['mixed_s']:>12.3f} {r['separate_s']:>12.3f} {r['speedup']:>8.2f} "
              f"{r['single_adapter_s']:>26.3f} {r['speedup_ceiling']:>8.2f}")  # fmt: skip
    print(f"prompt overhead %: {results['prompt_overhead_percent']}")


def pct(slow: float, fast: float) -> float:
    return round(100 * (slow / fast - 1), 1)


# --------------------------------------------------------------------------------------------- systems
def build_systems(args) -> dict:
    """name -> (predict one text, predict a list with batch 32)."""
    from transformers import AutoTokenizer, pipeline

    from ptuning import PromptClassifier

    path = backbone_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = hf_classifier(2, args.seed).eval()
    from ptuning.plan import AUTO_LORA_RANK

    ours = PromptClassifier(labels=LABELS, lora_rank=AUTO_LORA_RANK, device="cpu").eval()
    ours_plain = PromptClassifier(labels=LABELS, lora_rank=0, device="cpu").eval()
    ours_pt = PromptClassifier(labels=LABELS, method="p-tuning", pooling="model", num_virtual_tokens=20, device="cpu")
    ours_pt.eval()
    # the kinds of issue 22: a later start costs nothing at inference (the same pass); bias offsets add per-row hooks
    ours_offsets = PromptClassifier(labels=LABELS, start_layer=2, bias_offsets=True, device="cpu").eval()
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device="cpu")
    lengths = {
        f"ours-{m}-n{k}": PromptClassifier(labels=LABELS, method=m, num_virtual_tokens=k, device="cpu").eval()
        for m in args.length_methods
        for k in args.prompt_lengths
        if k > 0 or m == "prompt"  # no prompt at all is one system, whatever the method
    }
    cut = {"truncation": True, "max_length": args.max_length}

    from ptuning.backbones import precision_dtype

    bf16 = precision_dtype(torch.device("cpu")) == torch.bfloat16  # the bare model runs in ptuning's precision

    @torch.inference_mode()
    def bare(batch: list[str]) -> list[dict]:
        enc = tok(batch, padding=True, return_tensors="pt", **cut)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            probs = model(**enc).logits.float().softmax(-1)
        best = probs.argmax(-1)
        return [{"label": LABELS[b], "score": float(p[b])} for p, b in zip(probs, best)]

    def bare_batches(batch: list[str], sort: bool) -> list[dict]:
        order = list(range(len(batch)))
        out: list = [None] * len(batch)
        if sort:  # sort by token count, as predict does (tokenising twice is part of the cost)
            lengths = [len(x) for x in tok(batch, **cut)["input_ids"]]
            order = sorted(range(len(batch)), key=lengths.__getitem__)
        for s in range(0, len(order), args.batch_size):
            idx = order[s : s + args.batch_size]
            for i, r in zip(idx, bare([batch[i] for i in idx])):
                out[i] = r
        return out

    def predictors(clf) -> tuple:
        return (lambda t: clf.predict([t]), lambda b: clf.predict(b, batch_size=args.batch_size))

    return {
        "bare": (lambda t: bare([t]), lambda b: bare_batches(b, sort=False)),
        "bare-sorted": (None, lambda b: bare_batches(b, sort=True)),
        "ours-default": predictors(ours),
        "ours-no-updates": predictors(ours_plain),
        "ours-p-tuning": predictors(ours_pt),
        "ours-offsets": predictors(ours_offsets),
        **{name: predictors(clf) for name, clf in lengths.items()},
        "pipeline": (lambda t: pipe(t, **cut), lambda b: pipe(b, batch_size=args.batch_size, **cut)),
    }


# --------------------------------------------------------------------------------------------- measurements
def latency(systems: dict, texts: list[str]) -> dict:
    single = {k: v[0] for k, v in systems.items() if v[0] is not None}
    for f in single.values():  # warm-up
        for t in texts[:5]:
            f(t)
    times: dict[str, list[float]] = {k: [] for k in single}
    names = list(single)
    log(f"latency: {len(texts)} texts x {len(names)} systems")
    for i, t in enumerate(texts):
        for k in names[i % len(names) :] + names[: i % len(names)]:  # rotate who goes first
            start = time.perf_counter()
            single[k](t)
            times[k].append(time.perf_counter() - start)
    return {
        k: {"median_ms": round(1e3 * median(v), 3), "p95_ms": round(1e3 * percentile(v, 95), 3), "texts": len(v)}
        for k, v in times.items()
    }


def batched(systems: dict, texts: list[str], args) -> dict:
    many = {k: v[1] for k, v in systems.items()}
    for f in many.values():
        f(texts[:64])
    walls: dict[str, list[float]] = {k: [] for k in many}
    log(f"batched: {len(texts)} texts, batch {args.batch_size}, {args.repeats} repeats")
    for _ in range(args.repeats):
        for k, f in many.items():
            with Clock() as c:
                f(texts)
            walls[k].append(c.wall)
    return {
        k: {"wall_s_median": round(median(v), 3), "examples_per_s": round(len(texts) / median(v), 1), "texts": len(texts)}
        for k, v in walls.items()
    }


def mixed(texts: list[str], args) -> dict:
    from ptuning import PromptClassifier, predict_mixed

    torch.manual_seed(args.seed)
    adapters = [
        PromptClassifier(labels=LABELS, method=m, placement=pl, pooling=po, lora_rank=args.mixed_lora,
                         device="cpu").eval()
        for m, pl, po in MIXED
    ]  # fmt: skip
    k = len(adapters)
    runs = []
    for n in args.mixed_sizes:
        batch = (texts * (n // len(texts) + 1))[:n]
        rows = [i % k for i in range(n)]
        shares = [[t for t, r in zip(batch, rows) if r == a] for a in range(k)]
        predict_mixed(adapters, batch[:16], rows[:16])  # warm-up
        one, sep, single = [], [], []
        for _ in range(args.repeats):
            with Clock() as c:
                together = predict_mixed(adapters, batch, rows, batch_size=args.batch_size)
            one.append(c.wall)
            with Clock() as c:
                apart = [a.predict(s, batch_size=args.batch_size) if s else [] for a, s in zip(adapters, shares)]
            sep.append(c.wall)
            with Clock() as c:
                adapters[0].predict(batch, batch_size=args.batch_size)
            single.append(c.wall)
        # the same predictions either way (a check, not a timing)
        seen = [0] * k
        diff = 0.0
        for r, res in zip(rows, together):
            other = apart[r][seen[r]]
            seen[r] += 1
            diff = max(diff, max(abs(res["scores"][lab] - other["scores"][lab]) for lab in LABELS))
        runs.append({
            "texts": n, "mixed_s": round(median(one), 4), "separate_s": round(median(sep), 4),
            "speedup": round(median(sep) / median(one), 2), "max_abs_score_difference": diff,
            "single_adapter_s": round(median(single), 4), "speedup_ceiling": round(median(sep) / median(single), 2),
        })  # fmt: skip
        log(f"mixed N={n}: one call {median(one):.3f} s, {k} calls {median(sep):.3f} s")
    return {
        "adapters": [{"method": m, "placement": pl, "pooling": po, "lora_rank": args.mixed_lora} for m, pl, po in MIXED],
        "runs": runs,
        "note": "single_adapter_s: adapters[0] alone over all N texts in one call; speedup_ceiling = separate_s / that",
    }


if __name__ == "__main__":
    main()
