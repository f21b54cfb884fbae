"""The moving average of an adapter's weights (ptuning.averaging, ``--ema``): its arithmetic, that it leaves training
itself alone, that a run evaluates and keeps it, and that checkpoints carry it."""

import json
import threading

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ptuning.averaging import MovingAverage, average_rate
from ptuning.checkpoints import AVERAGE_STATE
from ptuning.errors import ConfigError
from ptuning.model import PromptClassifier
from ptuning.train import train
from tests.helpers import CancelAt, Trajectory, fast, same_weights, weights

pytestmark = pytest.mark.usefixtures("one_thread")


def adapter(tiny, **options) -> dict:
    return {"base_model": tiny("bert"), "num_virtual_tokens": 4, **options}


def by_hand(trajectory: dict[int, dict], decay: float, until: int) -> dict[str, torch.Tensor]:
    """The moving average of the weights from step 0 to ``until``, computed step by step from the recorded ones."""
    average = {k: v.clone() for k, v in trajectory[0].items()}
    for step in range(1, until + 1):
        keep = average_rate(decay, step - 1)  # the steps taken before this one
        average = {k: keep * average[k] + (1 - keep) * trajectory[step][k] for k in average}
    return average


def close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


# -- the arithmetic ---------------------------------------------------------------------------------------


def test_the_average_follows_the_weights_at_the_rate_of_its_step():
    layer = nn.Linear(2, 1)
    frozen = nn.Parameter(torch.ones(1), requires_grad=False)
    layer.register_parameter("frozen", frozen)
    start = layer.weight.detach().clone()
    average = MovingAverage(layer, decay=0.9)
    assert set(average.values) == {"weight", "bias"}  # only what trains

    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update(0)  # keeps 1/10 of the start
    expected = 0.1 * start + 0.9 * layer.weight.detach()
    assert torch.allclose(average.values["weight"], expected)
    with torch.no_grad():
        layer.weight.add_(1.0)
    average.update(100)  # the decay itself from here on
    expected = 0.9 * expected + 0.1 * layer.weight.detach()
    assert torch.allclose(average.values["weight"], expected)


def test_applied_puts_the_average_in_place_and_then_the_weights_back():
    layer = nn.Linear(2, 1)
    average = MovingAverage(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.add_(2.0)
    live = layer.weight.detach().clone()
    average.update(1000)
    with average.applied():
        assert torch.allclose(layer.weight, live - 1.0)
    assert torch.equal(layer.weight.detach(), live)
    average.apply()
    assert torch.allclose(layer.weight, live - 1.0)


def test_a_saved_average_of_other_weights_is_refused():
    average = MovingAverage(nn.Linear(2, 1), decay=0.9)
    with pytest.raises(ValueError, match="other parameters"):
        average.load_state_dict({"weight": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match="shape"):
        average.load_state_dict({"weight": torch.zeros(1, 3), "bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="decay"):
        MovingAverage(nn.Linear(2, 1), decay=1.0)


# -- in a run ---------------------------------------------------------------------------------------------


def test_averaging_leaves_the_trained_weights_as_they_were(tiny, sentiment):
    runs, start = {}, None
    for decay in (0.0, 0.9):
        clf = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
        start = start or weights(clf)
        clf.load_state_dict(start)  # both runs start from the same adapter
        path = Trajectory(clf)
        # (no freeze of the lower layers: at the freeze they take their average, test_freeze.py)
        result = train(sentiment(64), model=clf, args=fast(ema=decay, eval_steps=1, freeze_after=0), callbacks=[path])
        runs[decay] = (path.at, result)
    (plain, plain_run), (averaged, averaged_run) = runs[0.0], runs[0.9]
    assert plain.keys() == averaged.keys() and all(same_weights(plain[s], averaged[s]) for s in plain)
    # what is scored differs: the evaluations read the average
    assert [h["val_loss"] for h in plain_run.state.history] != [h["val_loss"] for h in averaged_run.state.history]
    assert plain_run.model.info["training"]["ema"] == 0.0 and averaged_run.model.info["training"]["ema"] == 0.9


def test_the_run_keeps_the_average_at_its_best_evaluation(tiny, sentiment):
    clf = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
    path = Trajectory(clf)
    result = train(sentiment(64), model=clf, args=fast(ema=0.8, epochs=4, eval_steps=1), callbacks=[path])

    best = result.state.best_step
    assert close(weights(result.model), by_hand(path.at, 0.8, best))
    assert not close(weights(result.model), path.at[best])  # the average, not the weights of that step


def test_without_validation_the_run_keeps_the_average_at_its_last_step(tiny, sentiment):
    clf = PromptClassifier(**adapter(tiny), labels=["neg", "pos"])
    path = Trajectory(clf)
    result = train(sentiment(64), model=clf, args=fast(ema=0.8, val_split=0.0), callbacks=[path])

    assert result.state.history == [] and result.state.step == 12
    assert close(weights(result.model), by_hand(path.at, 0.8, 12))


def test_the_default_run_averages(tiny, sentiment):
    result = train(sentiment(48), config=adapter(tiny), args=fast(epochs=1))
    assert 0 < result.model.info["training"]["ema"] < 1


# -- checkpoints ------------------------------------------------------------------------------------------


def cut_run(tiny, sentiment, ckpt, cancel_at=5):
    """A run cancelled after ``cancel_at`` steps, its checkpoint in ``ckpt``."""
    event = threading.Event()
    args = fast(epochs=3, ema=0.8, checkpoint_dir=str(ckpt))
    return train(sentiment(64), config=adapter(tiny), args=args, cancel=event, callbacks=[CancelAt(cancel_at, event)])


def test_a_resumed_run_keeps_the_same_average_as_one_run(tiny, tmp_path, sentiment):
    whole = train(sentiment(64), config=adapter(tiny), args=fast(epochs=3, ema=0.8))
    cut = cut_run(tiny, sentiment, tmp_path / "cut")
    assert cut.state.cancelled and (tmp_path / "cut" / AVERAGE_STATE).is_file()

    resumed = train(sentiment(64), config=adapter(tiny),
                    args=fast(epochs=3, ema=0.8, checkpoint_dir=str(tmp_path / "cut"), resume=True))  # fmt: skip
    assert resumed.state.step == whole.state.step == 9
    assert same_weights(weights(resumed.model), weights(whole.model))
    assert [h["val_loss"] for h in resumed.state.history] == [h["val_loss"] for h in whole.state.history]


def test_the_best_adapter_of_a_checkpoint_is_the_average(tiny, tmp_path, sentiment):
    train(sentiment(64), config=adapter(tiny), args=fast(epochs=2, ema=0.8, checkpoint_dir=str(tmp_path / "c")))
    state = json.loads((tmp_path / "c" / "trainer_state.json").read_text())
    assert state["best_step"] == state["step"]  # best/ was written from this save's kept weights
    best = PromptClassifier.from_pretrained(tmp_path / "c" / "best")
    last = PromptClassifier.from_pretrained(tmp_path / "c" / "last")
    assert not same_weights(weights(best), weights(last))  # the average, beside the weights as trained


def test_a_checkpoint_from_before_averaging_resumes_and_starts_the_average_there(tiny, tmp_path, sentiment):
    cut_run(tiny, sentiment, tmp_path / "cut")
    (tmp_path / "cut" / AVERAGE_STATE).unlink()  # as a run saved before averaging existed left it

    resumed = train(sentiment(64), config=adapter(tiny),
                    args=fast(epochs=3, ema=0.8, checkpoint_dir=str(tmp_path / "cut"), resume=True))  # fmt: skip
    assert resumed.state.step == 9 and not resumed.state.cancelled


@pytest.mark.parametrize("damage", ["garbled", "other-shape"])
def test_a_damaged_average_is_refused_in_one_line(tiny, tmp_path, sentiment, damage):
    cut_run(tiny, sentiment, tmp_path / "cut")
    path = tmp_path / "cut" / AVERAGE_STATE
    if damage == "garbled":
        path.write_bytes(path.read_bytes()[:40])
    else:
        save_file({"deep.tables": torch.zeros(3)}, str(path))

    with pytest.raises(ConfigError, match="damaged.*train anew"):
        train(sentiment(64), config=adapter(tiny),
              args=fast(epochs=3, ema=0.8, checkpoint_dir=str(tmp_path / "cut"), resume=True))  # fmt: skip


def test_ema_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="ema must be in"):
        fast(ema=1.0)
