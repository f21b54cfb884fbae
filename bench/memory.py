#!/usr/bin/env python
"""Memory and disk: peak RSS of training and serving (each in a fresh process), and the size of adapter files.

    python bench/memory.py                                  # full run (est. 3 min on 2 idle cores)
    python bench/memory.py --train-steps 3 --predict-texts 64               # smoke test

Peak RSS is the high-water mark (``VmHWM``, see ``common.peak_rss_mb``) of a child process started for one job only (the
standard library: no psutil needed), so nothing else the benchmark did inflates it. Jobs:
- ``import``: Python + torch + transformers + ptuning imported, nothing loaded (the floor of every other job;
  training jobs also import scikit-learn to split the data);
- ``serve-bare``: AutoModelForSequenceClassification + tokenizer loaded, ``--predict-texts`` texts classified;
- ``serve-ours-default`` / ``serve-ours`` / ``serve-ours-p-tuning``: an adapter (ptuning's default: 5 deep vectors;
  ``prompt``, 20 vectors; ``p-tuning``, 20 vectors) loaded with ``PromptClassifier.from_pretrained`` (the backbone
  with it), the same texts classified with ``predict``;
- ``train-ours-default`` / ``train-ours`` / ``train-ours-p-tuning``: ``ptuning.train.train`` for ``--train-steps``
  steps (batch 32), same adapters;
- ``train-peft``: PEFT P_TUNING (20 vectors), a plain torch loop for the same steps; ``train-full-ft``: full
  fine-tuning, same.
Adapters (all-MiniLM-L6-v2, 2 labels): the default config, and each method with 20 prompt vectors (PEFT's usual
length), the files each holds, what prediction reads versus what only resuming training needs, and PEFT's own
P_TUNING adapter to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from common import (
    LABELS, Run, backbone_path, data_args, hf_classifier, log, movie_split, peak_rss_mb, read_movie_polarity, result_name, setup,
)  # fmt: skip

JOBS = ("import", "serve-bare", "serve-ours-default", "serve-ours", "serve-ours-p-tuning", "train-ours-default",
        "train-ours", "train-ours-p-tuning", "train-peft", "train-full-ft")  # fmt: skip
METHOD_LENGTH = 20  # the method-named adapters: PEFT's usual length, as in its examples


def adapter_name(job_or_name: str) -> str:
    """The adapter a job (``train-ours-p-tuning``) or an adapter name stands for; plain ``-ours`` jobs: ``prompt``."""
    return next((n for n in ("default", "p-tuning", "deep") if job_or_name.endswith(n)), "prompt")


def adapter_options(job_or_name: str) -> dict:
    """The default config, or a method with ``METHOD_LENGTH`` vectors."""
    name = adapter_name(job_or_name)
    return {} if name == "default" else {"method": name, "num_virtual_tokens": METHOD_LENGTH}


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), with_epochs=False)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--predict-texts", type=int, default=512)
    p.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    p.add_argument("--child", choices=JOBS, help=argparse.SUPPRESS)
    p.add_argument("--adapter", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    setup(args)
    name = result_name("memory", args, ("train_steps", "predict_texts"), {"train_steps": 20, "predict_texts": 512})
    run = Run(name, args)

    with tempfile.TemporaryDirectory() as tmp:
        adapters = save_adapters(Path(tmp), args)
        disk = adapter_sizes(adapters, Path(tmp), args)
        rss = {}
        for job in args.jobs:
            rss[job] = spawn(job, args, adapters)
            log(f"{job:<22} peak RSS {rss[job]['peak_rss_mb']:>7.1f} MiB")
    floor = rss.get("import", {}).get("peak_rss_mb")
    if floor:
        for job, r in rss.items():
            r["above_import_mb"] = round(r["peak_rss_mb"] - floor, 1)
    run.write({"peak_rss": rss, "disk": disk})
    print(json.dumps(disk["summary"], indent=2))


# --------------------------------------------------------------------------------------------- children
def spawn(job: str, args, adapters: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", job, "--train-steps", str(args.train_steps),
           "--predict-texts", str(args.predict_texts), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length), "--seed", str(args.seed)]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if job.startswith("serve-ours"):
        cmd += ["--adapter", str(adapters[adapter_name(job)])]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if out.returncode != 0:
        raise SystemExit(f"{job} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(args) -> None:
    import time

    setup(args)
    import transformers  # noqa: F401

    import ptuning  # noqa: F401

    after_import = peak_rss_mb()
    job, start = args.child, time.perf_counter()
    extra = {}
    if job.startswith("serve"):  # file order, no split: a server loads no scikit-learn
        texts = read_movie_polarity()[0][: args.predict_texts]
    elif job.startswith("train"):
        split = movie_split(args.train_steps * args.batch_size, 64)
    if job == "serve-bare":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(backbone_path())
        model = hf_classifier(2, args.seed).eval()
        with torch.inference_mode():
            for s in range(0, len(texts), args.batch_size):
                enc = tok(texts[s : s + args.batch_size], padding=True, truncation=True,
                          max_length=args.max_length, return_tensors="pt")  # fmt: skip
                model(**enc).logits.softmax(-1)
    elif job.startswith("serve-ours"):
        from ptuning import PromptClassifier

        clf = PromptClassifier.from_pretrained(args.adapter, device="cpu")
        clf.predict(texts, batch_size=args.batch_size)
    elif job.startswith("train-ours"):
        from loops import train_ours
        from ptuning import PromptClassifier

        clf = PromptClassifier(labels=LABELS, **adapter_options(job), device="cpu")
        _, summary = train_ours(
            clf, split.train_texts, split.train_labels, split.test_texts[:64], split.test_labels[:64], epochs=1,
            batch_size=args.batch_size, max_length=args.max_length, seed=args.seed, max_steps=args.train_steps,
            eval_each_epoch=False,
        )  # fmt: skip
        extra["impl"] = summary["impl"]
    elif job in ("train-peft", "train-full-ft"):
        from transformers import AutoTokenizer, DataCollatorWithPadding

        from loops import hf_features, linear_schedule, train_hf_epoch

        tok = AutoTokenizer.from_pretrained(backbone_path())
        model = hf_classifier(2, args.seed)
        lr = 5e-5
        if job == "train-peft":
            from peft import PromptEncoderConfig, TaskType, get_peft_model

            model = get_peft_model(model, PromptEncoderConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=20,
                                                              encoder_hidden_size=128))  # fmt: skip
            lr = 3e-3
        feats = hf_features(tok, split.train_texts, split.train_labels, args.max_length)[: args.train_steps * args.batch_size]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        train_hf_epoch(model, opt, linear_schedule(opt, args.train_steps, 0.1), DataCollatorWithPadding(tok), feats,
                       args.batch_size, args.seed)  # fmt: skip
    print(json.dumps({
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_after_imports_mb": round(after_import, 1),
        "job_wall_s": round(time.perf_counter() - start, 2), **extra,
    }))  # fmt: skip


# --------------------------------------------------------------------------------------------- disk
def save_adapters(root: Path, args) -> dict[str, Path]:
    from ptuning import PromptClassifier

    torch.manual_seed(args.seed)
    out = {}
    for name in ("default", "prompt", "p-tuning", "deep"):
        clf = PromptClassifier(labels=LABELS, **adapter_options(name), device="cpu")
        out[name] = clf.save_pretrained(root / name)
    clf = PromptClassifier(labels=LABELS, **adapter_options("p-tuning"), pooling="model", device="cpu")
    out["p-tuning-model-head"] = clf.save_pretrained(root / "p-tuning-model-head")
    return out


def files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}


def adapter_sizes(adapters: dict[str, Path], root: Path, args) -> dict:
    from ptuning import PromptClassifier
    from ptuning.adapter_files import RESUME_WEIGHTS

    out: dict = {"adapters": {name: files(d) for name, d in adapters.items()}}
    # What prediction needs: the p-tuning adapter without its resume file predicts the same
    full = adapters["p-tuning"]
    bare = root / "p-tuning-without-resume"
    shutil.copytree(full, bare)
    (bare / RESUME_WEIGHTS).unlink()
    texts = movie_split(None, 64).test_texts
    a = PromptClassifier.from_pretrained(full, device="cpu").predict(texts)
    b = PromptClassifier.from_pretrained(bare, device="cpu").predict(texts)
    diff = max(abs(x["score"] - y["score"]) for x, y in zip(a, b))
    out["predict_without_resume_file"] = {"max_abs_score_difference": diff, "files": files(bare)}

    # PEFT's own P_TUNING adapter and a full fine-tuned checkpoint, for scale
    from peft import PromptEncoderConfig, TaskType, get_peft_model
    from transformers.utils import logging as hf_logging

    model = hf_classifier(2, args.seed)
    hf_logging.disable_progress_bar()
    model.save_pretrained(root / "full-ft")
    peft = get_peft_model(model, PromptEncoderConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=20,
                                                     encoder_hidden_size=128))  # fmt: skip
    peft.save_pretrained(root / "peft-p-tuning")
    out["peft_p_tuning"] = files(root / "peft-p-tuning")
    out["full_ft_checkpoint"] = files(root / "full-ft")
    total = {name: sum(f.values()) for name, f in out["adapters"].items()}
    needed = {k: v for k, v in out["adapters"]["p-tuning"].items() if k != RESUME_WEIGHTS}
    out["summary"] = {
        "adapter_total_bytes": total,
        "p_tuning_predict_needs_bytes": sum(needed.values()),
        "p_tuning_resume_file_bytes": out["adapters"]["p-tuning"].get(RESUME_WEIGHTS),
        "peft_p_tuning_total_bytes": sum(out["peft_p_tuning"].values()),
        "full_ft_checkpoint_bytes": sum(out["full_ft_checkpoint"].values()),
        "predict_without_resume_max_abs_diff": diff,
    }
    return out


if __name__ == "__main__":
    main()
