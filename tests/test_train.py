"""Training (ptuning.train): learning, progress, cancelling and resuming, early stopping, checkpoints.

Tiny random backbones cannot understand language, but they can learn that one word decides the label: the
synthetic data (the ``sentiment`` and ``scores`` fixtures) hides sentiment words among filler words.
"""

import json
import threading

import accelerate
import pytest
import torch
from safetensors.torch import load_file

from ptuning.config import Method
from ptuning.data import Dataset
from ptuning.errors import ConfigError, DataError
from ptuning.model import PromptClassifier
from tests.helpers import fast, same_weights, weights
pytestmark = pytest.mark.usefixtures("one_thread")

from ptuning.train import (
    MAX_AUTO_EPOCHS,
    PROMPT_LR,
    Callback,
    TrainingArguments,
    auto_epochs,
    auto_max_length,
    evaluate,
    train,
)

def adapter(tiny, family: str = "bert", **options) -> dict:
    return {"base_model": tiny(family), "num_virtual_tokens": 4, **options}


def close_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-9) for k in a)


class Recorder(Callback):
    def __init__(self, model=None, cancel_at=None, event=None):
        self.calls, self.steps, self.evaluated, self.snapshots = [], [], [], {}
        self.model, self.cancel_at, self.event = model, cancel_at, event

    def on_train_begin(self, state):
        self.calls.append("begin")

    def on_step_end(self, state):
        self.steps.append((state.step, state.loss, state.learning_rate, state.eta_s, state.examples_per_s))
        if self.cancel_at is not None and state.step == self.cancel_at:
            self.event.set()

    def on_evaluate(self, state, metrics):
        self.evaluated.append((state.step, metrics))
        if self.model is not None:
            self.snapshots[state.step] = weights(self.model)

    def on_train_end(self, state):
        self.calls.append("end")


# -- learning ---------------------------------------------------------------------------------------------


def test_training_learns_an_easy_task(tiny, sentiment):
    result = train(sentiment(96), config=adapter(tiny), args=fast(epochs=8))

    held_out = evaluate(result.model, sentiment(64, seed=1))
    losses = [h["train_loss"] for h in result.state.history]
    assert losses[-1] < losses[0]
    assert held_out["accuracy"] >= 0.7  # chance is 0.5; a tiny random backbone caps what a head can read
    assert set(held_out) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n_examples"}


def test_regression_learns_the_scale_and_starts_from_the_mean(tiny, scores):
    data, held_out, config = scores(96), scores(16, seed=1), adapter(tiny, head_dropout=0.0)
    untrained = train(data, eval_data=held_out, config=config, args=fast(), cancel=lambda: True)
    result = train(data, eval_data=held_out, config=config, args=fast(epochs=6, lr=0.3, head_lr=0.3))

    mean = sum(data.labels) / len(data.labels)
    variance = sum((y - mean) ** 2 for y in data.labels) / len(data.labels)
    assert untrained.model.head.linear.bias.item() == pytest.approx(mean)
    assert result.metrics["mse"] < 0.5 * variance
    assert set(result.metrics) == {"pearson", "spearman", "mse", "mae", "n_examples"}
    assert result.model.predict(["good great fine"])[0]["label"] is None


@pytest.mark.parametrize("method", ["p-tuning", "deep"])
def test_every_method_trains_its_own_parameters(tiny, method, sentiment):
    clf = PromptClassifier(**adapter(tiny, method=method), labels=["neg", "pos"])
    before = weights(clf)
    train(sentiment(32), model=clf, args=fast(epochs=1))

    changed = {k for k in before if not torch.equal(before[k], clf.state_dict()[k])}
    expected = "prompt.mlp_head" if method == "p-tuning" else "deep.tables"
    assert any(k.startswith(expected) for k in changed)
    assert any(k.startswith("head.") for k in changed)


def test_an_adapter_without_prompt_vectors_trains_its_head_and_reloads(tiny, tmp_path, sentiment):
    # num_virtual_tokens=0 is the linear-probe baseline: only the head learns, and the adapter is still a file.
    result = train(sentiment(32), config=adapter(tiny, num_virtual_tokens=0), args=fast(epochs=1), out_dir=tmp_path)
    assert result.model.prompt_vectors().shape[0] == 0
    reloaded = PromptClassifier.from_pretrained(tmp_path)
    texts = ["good movie", "a dull plot"]
    assert [r["scores"] for r in reloaded.predict(texts)] == [r["scores"] for r in result.model.predict(texts)]


def test_decoder_backbones_train(tiny, sentiment):
    clf = PromptClassifier(**adapter(tiny, "gpt2", pooling="last"), labels=["neg", "pos"])
    before = weights(clf)
    result = train(sentiment(32), model=clf, args=fast(epochs=1))

    assert result.state.step == result.state.total_steps
    assert [k for k, v in weights(clf).items() if torch.equal(before[k], v)] == []  # prompts and head all moved
    assert sum(map(sum, result.metrics["confusion_matrix"])) == result.metrics["n_examples"] == 8


# -- progress, cancelling, early stopping -----------------------------------------------------------------


def test_callbacks_receive_progress(tiny, sentiment):
    rec = Recorder()
    result = train(sentiment(64), config=adapter(tiny), args=fast(epochs=4), callbacks=[rec])

    state = result.state
    assert rec.calls == ["begin", "end"]
    assert [s[0] for s in rec.steps] == list(range(1, state.total_steps + 1))
    assert state.total_steps == 4 * 3 and state.epochs == 4  # 48 training examples, batches of 16
    assert all(loss > 0 and lr > 0 and per_s > 0 for _, loss, lr, _, per_s in rec.steps[:-1])
    assert rec.steps[-1][3] == 0  # nothing left: no time left
    assert [step for step, _ in rec.evaluated] == [3, 6, 9, 12]  # after every epoch
    assert [h["step"] for h in state.history] == [3, 6, 9, 12] and state.history[0]["epoch"] == 1.0
    assert state.elapsed_s > 0 and state.best_step in (3, 6, 9, 12)


def test_short_runs_evaluate_every_quarter_of_their_steps_rounded_up(tiny, sentiment):
    result = train(sentiment(64), config=adapter(tiny), args=fast(epochs=2))
    assert [h["step"] for h in result.state.history] == [2, 4, 6]  # 6 steps: every ceil(6 / 4) = 2


def test_eval_steps_sets_when_to_evaluate(tiny, sentiment):
    result = train(sentiment(64), config=adapter(tiny), args=fast(epochs=2, eval_steps=4))
    assert [h["step"] for h in result.state.history] == [4, 6]  # every 4 steps, and at the end


@pytest.mark.parametrize("how", ["event", "callable"])
def test_cancel_stops_between_steps_and_keeps_the_best_adapter(tiny, how, sentiment):
    clf = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
    event = threading.Event()
    rec = Recorder(model=clf, cancel_at=4, event=event)
    cancel = event if how == "event" else event.is_set
    args = fast(epochs=5, eval_steps=1, ema=0)  # the weights kept are those trained (averaging: test_averaging.py)
    result = train(sentiment(64), model=clf, args=args, callbacks=[rec], cancel=cancel)

    history = result.state.history
    assert result.state.cancelled and result.state.step == 4 and [h["step"] for h in history] == [1, 2, 3, 4]
    # the best evaluation: the highest accuracy, ties to the lower validation loss
    best = min(history, key=lambda h: (-h["accuracy"], h["val_loss"]))["step"]
    assert result.state.best_step == best
    assert same_weights(weights(result.model), rec.snapshots[best])
    assert not result.model.training


def test_cancel_before_any_evaluation_evaluates_once(tiny, sentiment):
    result = train(sentiment(64), config=adapter(tiny), args=fast(epochs=5), cancel=lambda: True)
    assert result.state.cancelled and result.state.step == 0
    assert len(result.state.history) == 1 and result.metrics["n_examples"] == 16


def test_early_stopping_after_patience_evaluations_without_improvement(tiny, sentiment):
    # A learning rate too small to change fp32 weights: every evaluation after the first is no better.
    args = fast(epochs=10, lr=1e-12, head_lr=0.0, lora_lr=0.0, patience=2)
    result = train(sentiment(64), config=adapter(tiny), args=args)

    assert result.state.stopped_early and not result.state.cancelled
    assert [h["step"] for h in result.state.history] == [3, 6, 9]
    assert result.state.best_step == 3
    assert result.model.info["training"]["stopped_early"] is True


def test_a_small_validation_set_keeps_the_adapter_at_the_stop(tiny, sentiment):
    # 16 validation texts are too few to choose by: the automatic patience stops the run as a given one does, but keeps
    # the adapter of its last evaluation, not the first one's that ties for best (lr 1e-12: the weights never move).
    frozen = dict(epochs=10, lr=1e-12, head_lr=0.0, lora_lr=0.0)
    auto = train(sentiment(64), config=adapter(tiny), args=fast(**frozen, patience=None)).state
    given = train(sentiment(64), config=adapter(tiny), args=fast(**frozen, patience=5)).state

    assert [h["step"] for h in auto.history] == [h["step"] for h in given.history] == [3, 6, 9, 12, 15, 18]
    assert (auto.kept, auto.stopped_early, auto.best_step) == ("last", True, 18)
    assert (given.kept, given.stopped_early, given.best_step) == ("best", True, 3)


def test_the_adapter_kept_at_the_stop_is_the_last_evaluations(tiny, sentiment):
    clf = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
    rec = Recorder(model=clf)
    result = train(sentiment(64), model=clf, args=fast(patience=None, ema=0), callbacks=[rec])

    assert result.state.kept == "last" and result.state.best_step == result.state.step == 9
    assert same_weights(weights(result.model), rec.snapshots[9])
    assert not same_weights(rec.snapshots[6], rec.snapshots[9])  # the weights moved: the last ones were chosen


def test_enough_validation_texts_stop_early_and_keep_the_best_by_default(tiny, sentiment, monkeypatch):
    monkeypatch.setattr("ptuning.train.MIN_SELECTION_EXAMPLES", 16)  # sentiment(64) holds out 16
    frozen = fast(epochs=10, lr=1e-12, head_lr=0.0, lora_lr=0.0, patience=None)  # the weights never move
    result = train(sentiment(64), config=adapter(tiny), args=frozen)

    assert result.state.kept == "best" and result.state.stopped_early
    assert [h["step"] for h in result.state.history] == [3, 6, 9, 12, 15, 18]  # 5 evaluations after the best
    assert result.state.best_step == 3
    assert result.model.info["training"]["patience"] == 5


# -- reproducibility and resuming -------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_adapter(tiny, sentiment):
    runs = [train(sentiment(48), config=adapter(tiny), args=fast(epochs=2, seed=s)) for s in (7, 7, 8)]
    first, again, other = (weights(r.model) for r in runs)
    assert same_weights(first, again)
    assert not same_weights(first, other)


@pytest.mark.parametrize("cancel_at", [3, 5], ids=["after-epoch-1", "mid-epoch-2"])
def test_cancel_then_resume_gives_the_same_adapter_as_one_run(tiny, tmp_path, cancel_at, sentiment):
    data, config = sentiment(64), adapter(tiny, method="p-tuning")
    whole = train(data, config=config, args=fast(epochs=3, checkpoint_dir=str(tmp_path / "whole")))

    event = threading.Event()
    args = fast(epochs=3, checkpoint_dir=str(tmp_path / "cut"))
    cut = train(data, config=config, args=args, cancel=event, callbacks=[Recorder(cancel_at=cancel_at, event=event)])
    resumed = train(data, config=config, args=fast(epochs=3, checkpoint_dir=str(tmp_path / "cut"), resume=True))

    assert cut.state.cancelled and cut.state.step == cancel_at
    assert resumed.state.step == whole.state.step == 9 and not resumed.state.cancelled
    assert same_weights(weights(resumed.model), weights(whole.model))
    assert [h["val_loss"] for h in resumed.state.history] == [h["val_loss"] for h in whole.state.history]
    assert resumed.metrics == whole.metrics


def test_checkpoint_is_safetensors_and_json_only(tiny, tmp_path, sentiment):
    train(sentiment(48), config=adapter(tiny), args=fast(epochs=2, checkpoint_dir=str(tmp_path / "ckpt")))

    files = sorted(p.relative_to(tmp_path / "ckpt").as_posix() for p in (tmp_path / "ckpt").rglob("*") if p.is_file())
    assert all(f.endswith((".json", ".safetensors")) for f in files)
    assert {"trainer_state.json", "optimizer.safetensors", "rng_state.safetensors"} <= set(files)
    assert {"last/adapter_model.safetensors", "best/adapter_model.safetensors"} <= set(files)
    state = json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["finished"] and len(state["history"]) == 3
    assert any(k.endswith(".exp_avg") for k in load_file(tmp_path / "ckpt" / "optimizer.safetensors"))
    assert PromptClassifier.from_pretrained(tmp_path / "ckpt" / "last").config.labels == ["neg", "pos"]


def test_resume_with_other_settings_is_refused(tiny, tmp_path, sentiment):
    ckpt = str(tmp_path / "ckpt")
    train(sentiment(48), config=adapter(tiny), args=fast(epochs=1, checkpoint_dir=ckpt))
    with pytest.raises(ConfigError, match="epochs=1"):
        train(sentiment(48), config=adapter(tiny), args=fast(epochs=2, checkpoint_dir=ckpt, resume=True))
    with pytest.raises(ConfigError, match="data differs"):
        train(sentiment(48, seed=3), config=adapter(tiny), args=fast(epochs=1, checkpoint_dir=ckpt, resume=True))


def test_a_checkpoint_from_before_an_argument_existed_resumes_at_its_default(tiny, tmp_path, sentiment):
    data, config, ckpt = sentiment(64), adapter(tiny), tmp_path / "cut"
    whole = train(data, config=config, args=fast(epochs=2, checkpoint_dir=str(tmp_path / "whole")))
    event = threading.Event()
    train(data, config=config, args=fast(epochs=2, checkpoint_dir=str(ckpt)), cancel=event,
          callbacks=[Recorder(cancel_at=2, event=event)])  # fmt: skip
    state = json.loads((ckpt / "trainer_state.json").read_text())
    del state["args"]["backbone_dropout"]  # as a run interrupted before the argument was added saved it
    (ckpt / "trainer_state.json").write_text(json.dumps(state))

    resumed = train(data, config=config, args=fast(epochs=2, checkpoint_dir=str(ckpt), resume=True))
    assert same_weights(weights(resumed.model), weights(whole.model))
    with pytest.raises(ConfigError, match="backbone_dropout=0.0"):  # a value other than the default is a change
        train(data, config=config, args=fast(epochs=2, checkpoint_dir=str(ckpt), resume=True, backbone_dropout=0.1))


def test_resume_without_a_checkpoint_is_refused(tiny, tmp_path, sentiment):
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(sentiment(48), config=adapter(tiny), args=fast(checkpoint_dir=str(tmp_path / "none"), resume=True))


def test_training_continues_from_a_saved_adapter(tiny, tmp_path, sentiment):
    first = train(sentiment(48), config=adapter(tiny, method="p-tuning"), args=fast(epochs=2), out_dir=tmp_path / "a")
    # Steps too small to change fp32 weights: what comes out is what was loaded, the encoder included.
    again = train(sentiment(48), init_adapter=tmp_path / "a", args=fast(epochs=1, lr=1e-12, head_lr=0.0, lora_lr=0.0))

    assert close_weights(weights(again.model), weights(first.model))
    assert again.model.config.method.value == "p-tuning"


# -- settings chosen from the data ------------------------------------------------------------------------


def test_auto_epochs_give_small_data_many_passes_and_large_data_few():
    assert auto_epochs(180, 32) == MAX_AUTO_EPOCHS
    assert 1 <= auto_epochs(45_000, 32) <= 3
    assert auto_epochs(500_000, 32) == 1
    assert auto_epochs(45_000, 32, processes=8) > auto_epochs(45_000, 32)


def test_auto_max_length_cuts_outliers_only():
    assert auto_max_length([12] * 99 + [300], 512) == 16
    assert auto_max_length([5, 6, 7], 512) == 7  # never more than the longest example
    assert auto_max_length([600] * 10, 512) == 512  # long texts: the base model's limit (test_long_texts.py)


def test_auto_max_length_truncates_the_rare_long_text(tiny, sentiment):
    data = sentiment(64, long=1)
    result = train(data, eval_data=sentiment(16, seed=1), config=adapter(tiny), args=fast(epochs=1))
    max_length = result.model.info["training"]["max_length"]
    assert max_length < 100  # the long text alone would need more than 100 tokens
    assert any("truncated" in w for w in result.warnings)


def test_defaults_resolve_from_the_method(tiny, sentiment):
    args = TrainingArguments(epochs=1, batch_size=16, val_split=0.25)
    result = train(sentiment(32), config=adapter(tiny, method="deep"), args=args)
    assert result.model.info["training"]["learning_rate"] == PROMPT_LR[Method.DEEP]


def test_info_records_metrics_training_and_data(tiny, tmp_path, sentiment):
    result = train(sentiment(48), config=adapter(tiny), args=fast(epochs=1), out_dir=tmp_path / "a", description="toy")

    saved = json.loads((tmp_path / "a" / "ptuning_config.json").read_text())["info"]
    assert saved["metrics"]["accuracy"] == result.metrics["accuracy"]
    assert saved["training"]["n_train"] == 36 and saved["training"]["n_val"] == 12
    assert saved["training"]["epochs"] == 1 and saved["training"]["learning_rate"] == 0.1
    assert saved["label_distribution"] == {"neg": 24, "pos": 24}
    assert saved["dataset_description"] == "toy"


def test_eval_data_replaces_the_split(tiny, sentiment):
    result = train(sentiment(32), eval_data=sentiment(20, seed=5), config=adapter(tiny), args=fast(epochs=1))
    assert result.metrics["n_examples"] == 20
    assert result.model.info["training"]["n_train"] == 32


def test_no_validation_gives_no_metrics(tiny, sentiment):
    result = train(sentiment(32), config=adapter(tiny), args=fast(epochs=1, val_split=0.0))
    assert result.metrics == {} and result.state.history == []


def test_one_class_data_is_refused(tiny):
    with pytest.raises(DataError, match="two classes"):
        train(Dataset(texts=["a", "b"], labels=[0, 0], label_names=["x", "y"]), config=adapter(tiny))


# -- evaluation -------------------------------------------------------------------------------------------


def test_evaluate_matches_labels_by_name(tiny, sentiment):
    result = train(sentiment(32), config=adapter(tiny), args=fast(epochs=1))
    data = sentiment(20, seed=2)
    flipped = Dataset(texts=data.texts, labels=[1 - y for y in data.labels], label_names=["pos", "neg"])

    assert evaluate(result.model, flipped) == evaluate(result.model, data)


def test_evaluate_refuses_labels_the_adapter_does_not_know(tiny, sentiment):
    result = train(sentiment(32), config=adapter(tiny), args=fast(epochs=1))
    other = Dataset(texts=["x", "y"], labels=[0, 1], label_names=["neg", "meh"])
    with pytest.raises(DataError, match="'meh'"):
        evaluate(result.model, other)


# -- devices and Accelerate -------------------------------------------------------------------------------


def test_single_process_accelerate_trains_the_adapter_and_leaves_the_backbone_alone(tiny, monkeypatch, sentiment):
    backward_calls = []
    original = accelerate.Accelerator.backward
    monkeypatch.setattr(
        accelerate.Accelerator, "backward", lambda self, loss, **kw: backward_calls.append(1) or original(self, loss)
    )
    clf = PromptClassifier(**adapter(tiny), labels=["neg", "pos"], device="cpu")
    backbone = clf.backbone.model
    before = {k: v.clone() for k, v in backbone.state_dict().items()}

    result = train(sentiment(48), model=clf, args=fast(epochs=1, device="cpu"))

    assert len(backward_calls) == result.state.total_steps
    assert result.model is clf and result.model.info["training"]["processes"] == 1
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in clf.parameters())


def test_a_device_other_than_the_models_is_refused(tiny, sentiment):
    clf = PromptClassifier(**adapter(tiny), labels=["neg", "pos"], device="cpu")
    with pytest.raises(ConfigError, match="the model is on cpu"):
        train(sentiment(32), model=clf, args=fast(device="meta"))
