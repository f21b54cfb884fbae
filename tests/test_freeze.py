"""Freezing the lower layers part way through a run (``--freeze-after``, FreezeOut): from the plan's step on, the
adapter's parts below the freeze layer stop moving, steps start from states computed once, and none of it changes
what a pass of the adapter computes, what a resumed run ends with, or a run that does not freeze."""

import dataclasses
import threading

import pytest
import torch
import transformers

from ptuning.config import Method
from ptuning.errors import ConfigError
from ptuning.estimate import Calibration
from ptuning.evaluation import predict_logits, task_loss
from ptuning.model import PromptClassifier
from ptuning.plan import Workload, make_plan
from ptuning.train import Callback, lower_parts, train
from ptuning.training_args import TrainingArguments
from tests.helpers import CancelAt, Trajectory, fast, same_weights, weights
from tests.tiny_models import build_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def adapter(tiny, **options) -> dict:
    return {"base_model": tiny("bert"), "num_virtual_tokens": 4, "lora_rank": 2, "bias_offsets": True, **options}


def test_the_plan_freezes_the_lower_half_of_the_trained_layers_at_its_share_of_the_steps():
    work = Workload((12,) * 320, (12,) * 32, 16, Method.DEEP, num_layers=6)
    plan = make_plan(TrainingArguments(epochs=5, freeze_after=0.4), work)
    assert (plan.total_steps, plan.freeze_step, plan.freeze_layer) == (50, 20, 3)
    late = make_plan(TrainingArguments(epochs=5, freeze_after=0.4), dataclasses.replace(work, start_layer=2))
    assert late.freeze_layer == 4
    assert make_plan(TrainingArguments(epochs=5), work).freeze_step == 20  # the default freezes at 0.4
    assert make_plan(TrainingArguments(epochs=5, freeze_after=0), work).freeze_step == 0
    ddp = Workload((12,) * 320, (12,) * 32, 16, Method.DEEP, processes=2, num_layers=6)
    assert make_plan(TrainingArguments(epochs=5, freeze_after=0.4), ddp).freeze_step == 0
    one = Workload((12,) * 320, (12,) * 32, 16, Method.DEEP, start_layer=5, num_layers=6)
    assert make_plan(TrainingArguments(epochs=5, freeze_after=0.4), one).freeze_step == 0  # one layer: none to freeze
    for method in (Method.PROMPT, Method.P_TUNING):  # nothing trained above the input but the head: no freeze
        assert make_plan(TrainingArguments(epochs=5), dataclasses.replace(work, method=method)).freeze_step == 0
    with_updates = dataclasses.replace(work, method=Method.PROMPT, lora_rank=4)
    assert make_plan(TrainingArguments(epochs=5), with_updates).freeze_step == 20


def test_the_plan_prices_the_steps_and_evaluations_after_the_freeze_at_the_layers_they_run():
    work = Workload((12,) * 320, (12,) * 32, 16, Method.DEEP, num_layers=6)
    costs = Calibration(1e-3, 0.0, 1e-4, 0.0)
    plain = make_plan(TrainingArguments(epochs=5, freeze_after=0), work, costs=costs)
    frozen = make_plan(TrainingArguments(epochs=5, freeze_after=0.4), work, costs=costs)
    assert frozen.frozen_cost == 0.5 and frozen.full_steps(50) == 20 + 30 * 0.5
    assert frozen.estimate.train_s == pytest.approx(plain.estimate.train_s * 35 / 50)
    # at 10 a whole pass; at 20 (the freeze comes before its evaluation), 30, 40 and 50 the upper half
    assert frozen.estimate.eval_s == pytest.approx(plain.estimate.eval_s * (1 + 4 * 0.5) / 5)


def test_a_run_estimated_from_its_own_steps_prices_them_alike_before_and_after_the_freeze():
    # 50 steps, 10 a pass of the validation texts, the lower half frozen from step 20: steps of 1 s before the freeze
    # and 0.5 s after it, a whole evaluation 0.2 s (0.1 s over the upper half)
    work = Workload((12,) * 320, (12,) * 32, 16, Method.DEEP, num_layers=6)
    plan = make_plan(TrainingArguments(epochs=5, freeze_after=0.4, eval_steps=10), work)
    assert (plan.freeze_step, plan.frozen_cost, plan.full_steps(50), plan.full_evaluations()) == (20, 0.5, 35, 3)
    whole = 35 * 1.0 + 3 * 0.2
    assert plan.seconds_from_run(0, 10, 10.0, 0.2) == pytest.approx(whole)  # the first evaluation before the freeze
    late = dataclasses.replace(plan, eval_every=30)  # --eval-steps past the freeze: the first one after it
    assert late.seconds_from_run(0, 30, 20 + 10 * 0.5, 0.1) == pytest.approx(35 * 1.0 + late.full_evaluations() * 0.2)
    assert plan.seconds_from_run(20, 30, 10 * 0.5, 0.1) == pytest.approx(whole)  # resumed at the freeze
    assert plan.seconds_from_run(30, 30, 0.0, 0.1) is None  # no step of its own to price from


def test_the_lower_parts_stop_at_their_average_and_the_upper_ones_train_on(tiny, sentiment):
    model = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
    path = Trajectory(model)
    result = train(sentiment(64), model=model, args=fast(epochs=3, ema=0.8, freeze_after=0.5), callbacks=[path])
    assert result.model.info["training"]["freeze_step"] == 4 and result.model.info["training"]["freeze_layer"] == 1
    lower = {name for name, _ in lower_parts(model, 1)}
    assert {"prompt.embedding.weight", "low_rank.a.0"} <= lower and not any(n.startswith("head") for n in lower)
    at = {step: {n: w[n] for n in lower} for step, w in path.at.items()}
    assert not same_weights(at[3], at[4])  # the step before the freeze still moved them
    assert not same_weights(at[4], at[5])  # the freeze put their average in place (before step 5)
    assert all(same_weights(at[5], at[step]) for step in range(6, 10))  # and after it nothing moves them
    upper = [n for n in path.at[9] if n not in lower and n.startswith(("head", "low_rank"))]
    assert upper and all(not torch.equal(path.at[5][n], path.at[9][n]) for n in upper)


def test_a_step_from_the_kept_states_computes_what_the_whole_pass_computes(tiny, sentiment):
    model = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
    train(sentiment(32), model=model, args=fast(epochs=1))  # trained weights everywhere, not the zero start
    examples = model.encode(["a fine film", "dull and far too long for what it says"]).examples
    batch = model.collate(examples)
    with torch.no_grad():
        whole = model(**batch)
        states = model.start_states(examples, [None, None], layer=1)
        from_kept = model(**batch, start_states=states, start_layer=1)
    assert torch.allclose(whole, from_kept, atol=1e-5)


def cut_run(tiny, sentiment, ckpt, cancel_at: int):
    event = threading.Event()
    args = fast(epochs=3, ema=0.8, freeze_after=0.5, checkpoint_dir=str(ckpt))
    return train(sentiment(64), config=adapter(tiny), args=args, cancel=event, callbacks=[CancelAt(cancel_at, event)])


@pytest.mark.parametrize("cancel_at", [2, 6])  # before the freeze step (4), and after it
def test_a_resumed_run_ends_as_one_run_did(tiny, tmp_path, sentiment, cancel_at):
    whole = train(sentiment(64), config=adapter(tiny), args=fast(epochs=3, ema=0.8, freeze_after=0.5))
    assert cut_run(tiny, sentiment, tmp_path / "cut", cancel_at).state.cancelled
    args = fast(epochs=3, ema=0.8, freeze_after=0.5, checkpoint_dir=str(tmp_path / "cut"), resume=True)
    resumed = train(sentiment(64), config=adapter(tiny), args=args)
    assert resumed.state.step == whole.state.step == 9
    assert same_weights(weights(resumed.model), weights(whole.model))
    assert [h["val_loss"] for h in resumed.state.history] == [h["val_loss"] for h in whole.state.history]


def test_freezing_leaves_the_saved_adapter_a_plain_one(tiny, tmp_path, sentiment):
    result = train(sentiment(64), config=adapter(tiny), args=fast(epochs=2, freeze_after=0.5), out_dir=tmp_path / "a")
    loaded = PromptClassifier.from_pretrained(tmp_path / "a")
    texts = ["a fine film", "dull"]
    assert [p["label"] for p in loaded.predict(texts)] == [p["label"] for p in result.model.predict(texts)]


def test_freeze_after_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="freeze_after"):
        TrainingArguments(freeze_after=1.0)


class FullPassLoss(Callback):
    """At every evaluation, the validation loss of the adapter as it stands, from a pass over every layer."""

    def __init__(self, model: PromptClassifier, val):
        self.model, self.val, self.losses = model, val, []

    def on_evaluate(self, state, metrics):
        examples = self.model.encode(self.val.texts).examples
        logits = predict_logits(self.model, examples, 64)
        self.losses.append(float(task_loss(logits, torch.tensor(self.val.labels), "classification")))
        self.model.train()


def test_evaluations_after_the_freeze_score_what_a_whole_pass_scores(tiny, sentiment):
    model = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
    val = sentiment(32, seed=1)
    check = FullPassLoss(model, val)
    result = train(sentiment(64), eval_data=val, model=model, args=fast(epochs=3, ema=0.0, freeze_after=0.3),
                   callbacks=[check])  # fmt: skip
    freeze_step = result.model.info["training"]["freeze_step"]
    assert sum(h["step"] > freeze_step for h in result.state.history) >= 2  # evaluations after the freeze
    recorded = [h["val_loss"] for h in result.state.history]
    assert recorded == pytest.approx(check.losses, abs=1e-5)


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory) -> str:
    """A tiny BERT of four layers (the shared ones have two): its freeze layer is 2, so a deep table freezes too."""
    path = build_tiny("bert", tmp_path_factory.mktemp("bert4"))
    config = transformers.AutoConfig.from_pretrained(path)
    config.num_hidden_layers = 4
    torch.manual_seed(0)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    return path


def test_the_deep_tables_below_the_freeze_layer_stay_and_those_above_train_on(four_layers, sentiment):
    model = PromptClassifier(base_model=four_layers, labels=["neg", "pos"], num_virtual_tokens=4, lora_rank=2)
    path = Trajectory(model)
    result = train(sentiment(64), model=model, args=fast(epochs=3, ema=0.8, freeze_after=0.5), callbacks=[path])
    assert result.model.info["training"]["freeze_layer"] == 2 and ("deep.tables", slice(0, 1)) in lower_parts(model, 2)
    tables = {step: w["deep.tables"] for step, w in path.at.items()}  # [layers - 1, n, H]: row 0 feeds layer 1
    assert not torch.equal(tables[3][0], tables[4][0])  # trained before the freeze (after step 4)
    assert all(torch.equal(tables[5][0], tables[step][0]) for step in range(6, 10))  # not after, Adam's momentum or no
    assert all(not torch.equal(tables[5][row], tables[9][row]) for row in (1, 2))  # the layers above train on
