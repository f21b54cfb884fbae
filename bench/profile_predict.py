#!/usr/bin/env python
"""Where single-text prediction time goes: torch.profiler over the bare model and PromptClassifier.predict.

    python bench/profile_predict.py                         # 200 test sentences per system (about 1 min)
    python bench/profile_predict.py --texts 10 --rounds 2 --lengths 0 20   # smoke test

For each system (the bare ``AutoModelForSequenceClassification`` + tokenizer, and ptuning's adapter of ``--method``,
the default ``deep``, at the start with mean pooling, with each prompt length in ``--lengths``), one call per text,
the same sentences: wall time per text, and the profiler's self-CPU time per text split into matrix products
(``aten::addmm``, ``mm``, ``bmm``, ``matmul``), attention (``scaled_dot_product_attention`` and its kernels), other
tensor ops, and the rest (Python, the tokenizer, dispatch: wall minus profiled op time), and positions per text
(text + prompt). The profiler's own cost and this machine's drift make its wall times noisy: the prompt's overhead
is measured by ``inference.py`` (interleaved, unprofiled); this script says where the time goes.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from common import LABELS, Run, backbone_path, data_args, hf_classifier, log, movie_split, result_name, setup

MATMUL = ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")
ATTENTION = ("scaled_dot_product", "flash_attention", "_efficient_attention")


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), with_epochs=False)
    p.add_argument("--texts", type=int, default=200, help="test sentences, one call each")
    p.add_argument("--lengths", type=int, nargs="+", default=[0, 5, 10, 20], help="prompt lengths of our adapters")
    p.add_argument("--rounds", type=int, default=10, help="slices of the texts, the systems alternating")
    p.add_argument("--method", default="deep", choices=("prompt", "p-tuning", "deep"), help="our adapters' method")
    args = p.parse_args()
    setup(args)
    run = Run(result_name("profile-predict", args, ("texts",), {"texts": 200}), args)
    texts = movie_split(None, args.test_size).test_texts[: args.texts]

    from transformers import AutoTokenizer

    from ptuning import PromptClassifier

    tok = AutoTokenizer.from_pretrained(backbone_path())
    model = hf_classifier(2, args.seed).eval()

    @torch.inference_mode()
    def bare(text: str):
        return model(**tok([text], truncation=True, max_length=args.max_length, return_tensors="pt")).logits

    real = sum(len(ids) for ids in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]) / len(texts)
    systems = {"bare": (bare, real)}
    for n in args.lengths:
        clf = PromptClassifier(labels=LABELS, method=args.method, num_virtual_tokens=n, device="cpu").eval()
        systems[f"ours-{args.method}-n{n}"] = (lambda t, c=clf: c.predict([t]), real + n)

    results = profile_systems(systems, texts, args.rounds)
    run.write({"texts": len(texts), "rounds": args.rounds, "systems": results})
    print(f"\n{'system':<18} {'positions':>9} {'wall ms':>8} {'matmul':>7} {'attn':>6} {'other ops':>9} {'rest':>6}")
    for name, r in results.items():
        s = r["self_cpu_ms_per_text"]
        print(f"{name:<18} {r['positions_per_text']:>9.1f} {r['wall_ms_per_text']:>8.2f} {s['matmul']:>7.2f} "
              f"{s['attention']:>6.2f} {s['other_ops']:>9.2f} {s['python_and_rest']:>6.2f}")  # fmt: skip


def profile_systems(systems: dict, texts: list[str], rounds: int) -> dict:
    """Profile every system over ``texts``, in ``rounds`` slices that alternate between systems.

    This machine's speed drifts over seconds: alternating slices let the drift hit every system alike.
    """
    for predict, _ in systems.values():  # warm-up
        for t in texts[:5]:
            predict(t)
    wall: dict[str, float] = defaultdict(float)
    ops: dict[str, dict[str, list]] = {name: defaultdict(lambda: [0.0, 0]) for name in systems}
    size = -(-len(texts) // rounds)
    for r in range(rounds):
        chunk = texts[r * size : (r + 1) * size]
        names = list(systems)
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
            predict = systems[name][0]
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                start = time.perf_counter()
                for t in chunk:
                    predict(t)
                wall[name] += time.perf_counter() - start
            for e in prof.key_averages():
                ops[name][e.key][0] += e.self_cpu_time_total
                ops[name][e.key][1] += e.count
    return {name: summarise_ops(ops[name], wall[name], len(texts), systems[name][1]) for name in systems}


def summarise_ops(ops: dict[str, list], wall: float, n: int, positions: float) -> dict:
    buckets: dict[str, float] = defaultdict(float)
    top = []
    for key, (us, count) in ops.items():
        if key.startswith(MATMUL):
            buckets["matmul"] += us
        elif any(a in key for a in ATTENTION):
            buckets["attention"] += us
        elif key.startswith("aten::") or key.startswith("prim::"):
            buckets["other_ops"] += us
        else:
            continue
        top.append((us, key, count))
    per_text = {k: round(v / 1e3 / n, 3) for k, v in buckets.items()}
    profiled = sum(buckets.values()) / 1e3
    per_text["python_and_rest"] = round((1e3 * wall - profiled) / n, 3)
    # The profiler adds its own cost per op: the wall time here is above an unprofiled run's (inference.py).
    log(f"{n} texts, {positions:.1f} positions: {1e3 * wall / n:.2f} ms per text (profiled)")
    return {
        "positions_per_text": round(positions, 2),
        "wall_ms_per_text": round(1e3 * wall / n, 3),
        "self_cpu_ms_per_text": {k: per_text.get(k, 0.0) for k in ("matmul", "attention", "other_ops", "python_and_rest")},
        "top_ops": [
            {"op": key, "self_cpu_ms_per_text": round(us / 1e3 / n, 3), "calls_per_text": round(c / n, 1)}
            for us, key, c in sorted(top, reverse=True)[:12]
        ],
    }


if __name__ == "__main__":
    main()
