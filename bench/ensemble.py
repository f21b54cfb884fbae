#!/usr/bin/env python
"""Accuracy of several saved adapters alone and of every average of their class probabilities, on one labelled file:
whether more adapters of the same kind (an ensemble) would lift an accuracy plateau that no setting of one lifts.

    python bench/ensemble.py TEST.csv ADAPTER_DIR ADAPTER_DIR [...] --name ensemble-full-split

The adapters are trained beforehand (``python -m ptuning train ... --out ADAPTER_DIR``); each must know the file's
labels, in the same order. Scores every subset of two or more.
"""

from __future__ import annotations

import argparse
import itertools

import torch
from common import Run, log, setup

from ptuning import PromptClassifier
from ptuning.data import load_dataset
from ptuning.evaluation import align_labels, predict_logits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("test", help="labelled CSV (text, label)")
    p.add_argument("adapters", nargs="+", help="saved adapter directories")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--name", default="ensemble")
    args = p.parse_args()
    setup(argparse.Namespace(**vars(args), seed=0))  # (nothing here is random)
    run = Run(args.name, args)
    probs, labels, names = {}, None, None
    for path in args.adapters:
        clf = PromptClassifier.from_pretrained(path)
        if names is not None and clf.config.labels != names:  # a probability's column is a class of the adapter's order
            raise SystemExit(f"{path}'s labels {clf.config.labels} are not {args.adapters[0]}'s {names}: "
                             "average adapters trained on the same labels")  # fmt: skip
        names = clf.config.labels
        data = align_labels(load_dataset(args.test, label_names=clf.config.labels), clf)
        encoded = clf.encode(data.texts, data.text_pairs, None)
        probs[path] = predict_logits(clf, encoded.examples, args.batch_size).softmax(-1)
        labels = torch.tensor(data.labels)

    def accuracy(paths: tuple[str, ...]) -> float:
        mean = sum(probs[q] for q in paths) / len(paths)
        return round((mean.argmax(-1) == labels).float().mean().item(), 4)

    alone = {path: accuracy((path,)) for path in args.adapters}
    subsets = [{"adapters": list(s), "accuracy": accuracy(s)}
               for k in range(2, len(args.adapters) + 1) for s in itertools.combinations(args.adapters, k)]  # fmt: skip
    for path, acc in alone.items():
        log(f"{path}: {acc:.4f}")
    for s in subsets:
        log(f"average of {', '.join(s['adapters'])}: {s['accuracy']:.4f}")
    run.write({"n_examples": len(labels), "alone": alone, "averages": subsets})


if __name__ == "__main__":
    main()
