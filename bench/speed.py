#!/usr/bin/env python
"""Training throughput: ptuning's training path versus the recipe a user copies from PEFT's examples.

    python bench/speed.py --epoch --rounds 2        # one full epoch each, ours/theirs/ours/theirs (est. 15-20 min on 2 idle cores)
    python bench/speed.py --steps 60 --rounds 3     # 60 steps each, the first 3 untimed (est. 6 min)
    python bench/speed.py --train-size 256 --steps 8 --skip 1 --rounds 1               # smoke test

Both sides: all-MiniLM-L6-v2, P-tuning with 20 virtual tokens at the start, MLP encoder hidden 128, the backbone's
own [CLS] head, batch 32, texts cut at 64 tokens, lr 3e-3, the same training examples.
- ours: ``ptuning.train.train`` (what ``python -m ptuning train`` runs): texts tokenised once, length-grouped
  batches padded per batch, the frozen backbone in eval mode (``--ours local``: a bare loop over ptuning.model);
- theirs: ``peft.get_peft_model(PromptEncoderConfig(...))`` trained by ``transformers.Trainer`` with
  ``DataCollatorWithPadding`` and default settings (no ``group_by_length``, the model in train mode), as PEFT's
  sequence-classification examples do.
Runs alternate in one process so both sides see the same machine load; the ratio is taken per round.

Achieved FLOP/s: see ``FLOP_ASSUMPTIONS`` (also written into the result).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from common import (
    LABELS, Run, backbone_path, data_args, hf_classifier, log, median, movie_split, result_name, seed_everything, setup,
)  # fmt: skip
from loops import StepLog, hf_features, train_ours

FLOP_ASSUMPTIONS = (
    "forward = 2 x (transformer-layer parameters) per position computed (prompt and padding included) + the "
    "attention products (4 x L^2 x hidden per layer and sequence); backward = 1 x forward, because the frozen "
    "weights get no gradients (only activation gradients flow back to the prompt); embeddings, the pooler, the head "
    "and the prompt encoder are ignored (<1%). Peak: the best of 20 fp32 torch.matmul runs."
)


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), with_epochs=False)
    p.add_argument("--steps", type=int, default=60, help="timed steps per run (ignored with --epoch)")
    p.add_argument("--epoch", action="store_true", help="one full epoch per run instead of --steps")
    p.add_argument("--skip", type=int, default=3, help="first steps of each run left out of the timing (warm-up)")
    p.add_argument("--rounds", type=int, default=3, help="ours+theirs pairs, alternating")
    p.add_argument("--num-virtual-tokens", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--ours", choices=("train", "local"), default="train",
                   help="train: ptuning.train.train; local: a bare loop over ptuning.model")  # fmt: skip
    p.add_argument("--matmul-size", type=int, default=1024, help="square fp32 matmul for the machine's peak")
    args = p.parse_args()
    setup(args)
    name = result_name("speed", args, ("train_size", "steps", "epoch", "rounds"), {"steps": 60, "rounds": 3, "epoch": False})
    run = Run(name, args)

    split = movie_split(args.train_size, 64)
    log(f"data: {split.describe()}")
    machine = {"matmul_before": matmul_throughput(args.matmul_size)}
    log(f"matmul fp32: {machine['matmul_before']}")

    rounds = []
    for r in range(args.rounds):
        ours = run_ours(split, args)
        log(f"round {r + 1} ours:   {ours['examples_per_s']:.1f} ex/s, {ours['achieved_gflop_s']:.1f} GFLOP/s")
        theirs = run_theirs(split, args)
        log(f"round {r + 1} theirs: {theirs['examples_per_s']:.1f} ex/s, {theirs['achieved_gflop_s']:.1f} GFLOP/s")
        rounds.append({"ours": ours, "theirs": theirs, "ratio": ours["examples_per_s"] / theirs["examples_per_s"]})
    machine["matmul_after"] = matmul_throughput(args.matmul_size)

    peak2 = max(machine["matmul_before"]["threads_2"]["square_gflop_s"], machine["matmul_after"]["threads_2"]["square_gflop_s"])
    summary = {}
    for side in ("ours", "theirs"):
        xs = [r[side]["examples_per_s"] for r in rounds]
        gf = [r[side]["achieved_gflop_s"] for r in rounds]
        summary[side] = {
            "examples_per_s_median": round(median(xs), 2),
            "examples_per_s_all": [round(x, 2) for x in xs],
            "epoch_wall_s_median": round(median([r[side]["epoch_wall_s"] for r in rounds]), 1),
            "padding_fraction": round(statistics.mean(r[side]["padding_fraction"] for r in rounds), 4),
            "positions_per_example": round(statistics.mean(r[side]["positions_per_example"] for r in rounds), 2),
            "achieved_gflop_s_median": round(median(gf), 1),
            "fraction_of_matmul_peak_2_threads": round(median(gf) / peak2, 3),
        }
    summary["ratio_ours_over_theirs_median"] = round(median([r["ratio"] for r in rounds]), 3)
    summary["ratio_all"] = [round(r["ratio"], 3) for r in rounds]
    results = {
        "data": split.describe(),
        "timed": "one epoch per run" if args.epoch else f"{args.steps} steps per run, the first {args.skip} untimed",
        "flop_assumptions": FLOP_ASSUMPTIONS,
        "machine_matmul": machine,
        "summary": summary,
        "rounds": rounds,
    }
    run.write(results)
    s = summary
    print(f"\nours {s['ours']['examples_per_s_median']} ex/s, theirs {s['theirs']['examples_per_s_median']} ex/s, "
          f"ratio {s['ratio_ours_over_theirs_median']} (rounds: {s['ratio_all']})")  # fmt: skip
    print(f"epoch: ours {s['ours']['epoch_wall_s_median']} s, theirs {s['theirs']['epoch_wall_s_median']} s; "
          f"ours {s['ours']['achieved_gflop_s_median']} GFLOP/s = {s['ours']['fraction_of_matmul_peak_2_threads']:.0%} "
          f"of the {peak2:.0f} GFLOP/s fp32 matmul peak on 2 threads")  # fmt: skip


# --------------------------------------------------------------------------------------------- the two sides
def run_ours(split, args) -> dict:
    from ptuning import PromptClassifier, PromptConfig

    seed_everything(args.seed)
    config = PromptConfig(
        labels=LABELS, method="p-tuning", num_virtual_tokens=args.num_virtual_tokens, placement="start",
        pooling="model", encoder_hidden_size=128,
    )  # fmt: skip
    clf = PromptClassifier(config=config, device="cpu")
    log_, _ = train_ours(
        clf, split.train_texts, split.train_labels, split.test_texts, split.test_labels, epochs=1,
        batch_size=args.batch_size, max_length=args.max_length, seed=args.seed, lr=args.lr,
        max_steps=None if args.epoch else args.steps, eval_each_epoch=False, impl=args.ours,
    )  # fmt: skip
    shapes = [(b, L, real) for (b, L), real in zip(log_.shapes, log_.real_tokens)]
    return measure(log_, shapes, len(split.train_texts), args, clf.backbone)


def run_theirs(split, args) -> dict:
    from peft import PromptEncoderConfig, TaskType, get_peft_model
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer
    from transformers import TrainerCallback, TrainingArguments

    from ptuning import load_backbone

    path = backbone_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = hf_classifier(2, args.seed)
    config = PromptEncoderConfig(
        task_type=TaskType.SEQ_CLS, num_virtual_tokens=args.num_virtual_tokens, encoder_hidden_size=128
    )
    model = get_peft_model(base, config)
    train = hf_features(tokenizer, split.train_texts, split.train_labels, args.max_length)
    log_ = StepLog()
    shapes: list[tuple[int, int, int]] = []
    collate = DataCollatorWithPadding(tokenizer)
    n_virtual = args.num_virtual_tokens

    def recording_collator(features):
        batch = collate(features)
        b, L = batch["input_ids"].shape
        shapes.append((b, L + n_virtual, int(batch["attention_mask"].sum()) + b * n_virtual))
        return batch

    class Timing(TrainerCallback):
        def on_train_begin(self, targs, state, control, **kw):
            log_.begin()

        def on_step_end(self, targs, state, control, **kw):
            log_.step()

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
            num_train_epochs=1, max_steps=-1 if args.epoch else args.steps, seed=args.seed,
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none", use_cpu=True,
            disable_tqdm=True, label_names=["labels"],
        )  # fmt: skip
        trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=recording_collator,
                          callbacks=[Timing()])  # fmt: skip
        trainer.train()
    return measure(log_, shapes, len(train), args, load_backbone(device="cpu"))


def measure(log_: StepLog, shapes, n_train: int, args, backbone) -> dict:
    """Throughput and FLOP/s of the timed window of one run."""
    skip = 0 if args.epoch else args.skip
    steps, wall, cpu = log_.window(skip)
    timed = shapes[skip : skip + steps]
    examples = sum(b for b, _, _ in timed)
    positions = sum(b * L for b, L, _ in timed)
    real = sum(r for _, _, r in timed)
    flop = sum(training_flop(b, L, backbone) for b, L, _ in timed)
    ex_s = examples / wall
    return {
        "steps": steps,
        "examples": examples,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_utilisation": round(cpu / wall, 2),
        "examples_per_s": ex_s,
        "epoch_wall_s": round(wall if args.epoch else n_train / ex_s, 1),
        "positions_computed": positions,
        "positions_per_example": positions / examples,
        "padding_fraction": 1 - real / positions,
        "training_gflop": round(flop / 1e9, 1),
        "achieved_gflop_s": flop / wall / 1e9,
    }


def training_flop(batch: int, length: int, backbone) -> float:
    """FLOPs of one training step on a [batch, length] input (see the module docstring for the assumptions)."""
    layer_params = sum(p.numel() for p in backbone.layers.parameters())
    hidden, layers = backbone.hidden_size, backbone.num_layers
    forward = 2 * layer_params * batch * length + layers * 4 * batch * length * length * hidden
    return 2 * forward


# --------------------------------------------------------------------------------------------- the machine
def matmul_throughput(n: int, repeat: int = 20) -> dict:
    """fp32 GFLOP/s of torch.matmul on 1 and 2 threads: an n x n square and a MiniLM-shaped [1536, 384] x [384, 1536]."""
    before = torch.get_num_threads()
    out = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out[f"threads_{threads}"] = {
                "square_gflop_s": round(_gflop_s(n, n, n, repeat), 1),
                "minilm_ffn_gflop_s": round(_gflop_s(1536, 384, 1536, repeat * 4), 1),
            }
    finally:
        torch.set_num_threads(before)
    return out


def _gflop_s(m: int, k: int, n: int, repeat: int) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeat):  # the best of many: the machine may be shared, the peak is what it can do
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9


if __name__ == "__main__":
    main()
