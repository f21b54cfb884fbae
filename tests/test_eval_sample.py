"""Evaluating on a fixed sample of a large validation set during training, and on all of it at the end."""

from __future__ import annotations

from ptuning.evaluation import evaluate
from ptuning.train import Callback, TrainingArguments, train


class Sizes(Callback):
    """Records how many validation examples each evaluation during training scored."""

    def __init__(self):
        self.seen: list[int] = []

    def on_evaluate(self, state, metrics):
        self.seen.append(sum(sum(row) for row in metrics["confusion_matrix"]))


def run(tiny, sentiment, eval_sample: int):
    sizes = Sizes()
    args = TrainingArguments(epochs=2, batch_size=8, eval_sample=eval_sample, device="cpu")
    result = train(sentiment(32), eval_data=sentiment(40, seed=1), args=args,
                   config={"base_model": tiny("bert"), "num_virtual_tokens": 2}, callbacks=[sizes])  # fmt: skip
    return result, sizes.seen


def test_evaluations_during_training_read_the_sample_and_the_best_adapter_is_scored_on_all(tiny, sentiment):
    result, seen = run(tiny, sentiment, eval_sample=10)
    assert seen and set(seen) == {10}
    full = evaluate(result.model, sentiment(40, seed=1))
    assert result.metrics["accuracy"] == full["accuracy"]
    assert result.model.info["training"]["n_val_sample"] == 10 and result.model.info["training"]["n_val"] == 40


def test_a_validation_set_within_the_sample_size_is_read_whole(tiny, sentiment):
    result, seen = run(tiny, sentiment, eval_sample=0)
    assert set(seen) == {40}
    result, seen = run(tiny, sentiment, eval_sample=40)
    assert set(seen) == {40} and result.model.info["training"]["n_val_sample"] is None
