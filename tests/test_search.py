"""Searching settings (ptuning.search): the trial table, pruning, the best adapter kept, the seed fixing the trials."""

import threading

import optuna
import pytest
import torch

from ptuning.config import Method
from ptuning.errors import ConfigError
from ptuning.model import PromptClassifier
from ptuning.plan import AUTO_LORA_RANK, auto_lora_rank
from ptuning.search import search
from ptuning.train import train
from tests.helpers import fast as fast_training

pytestmark = pytest.mark.usefixtures("one_thread")


def fast(**overrides):
    """Two epochs at the automatic learning rates: the search's first trial must be the defaults' run."""
    return fast_training(**{"epochs": 2, "lr": None, "head_lr": None, **overrides})


def config(tiny) -> dict:
    return {"base_model": tiny("bert")}


class PruneOddTrials(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial at its first evaluation: which trials stop is then known in advance."""

    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1


def test_the_table_has_one_row_per_trial_with_its_settings(tiny, sentiment):
    result = search(sentiment(48), 3, config=config(tiny), args=fast())

    rows = result.rows()
    assert [r["trial"] for r in rows] == [0, 1, 2]
    assert all(list(r) == list(rows[0]) for r in rows)  # the same columns in every row
    assert set(rows[0]) >= {"state", "method", "num_virtual_tokens", "lr", "head_lr", "epochs", "accuracy", "steps"}
    assert all(r["method"] in ("deep", "prompt", "p-tuning") and r["num_virtual_tokens"] in (5, 10, 20) for r in rows)
    assert all(1e-3 <= r["lr"] <= 1e-1 and 1e-3 <= r["head_lr"] <= 1e-1 and r["epochs"] == 2 for r in rows)
    assert result.best.state == "complete" and result.metric_name == "accuracy"


def test_the_first_trial_is_the_default_run(tiny, sentiment):
    data, args = sentiment(48), fast()
    result = search(data, 2, config=config(tiny), args=args)
    default = train(data, config=config(tiny), args=args)  # train() unchanged: its own evaluation schedule too

    assert result.trials[0].params == {"method": "deep", "num_virtual_tokens": 5, "start_layer": 0,
                                       "bias_offsets": False, "lora_rank": default.model.config.lora_rank,
                                       "lr": 1e-2, "head_lr": 1e-2, "epochs": 2}  # fmt: skip
    assert default.model.config.lora_rank == auto_lora_rank(Method.DEEP, len(data))
    assert result.trials[0].metrics == default.metrics
    assert (result.trials[0].steps, result.trials[0].total_steps) == (default.state.step, default.state.total_steps)
    assert result.model.info["training"]["best_step"] == default.state.best_step or result.best.number != 0


def test_pruned_trials_stop_early_and_are_marked(tiny, sentiment):
    result = search(sentiment(48), 4, config=config(tiny), args=fast(), pruner=PruneOddTrials())

    assert [t.state for t in result.trials] == ["complete", "pruned", "complete", "pruned"]
    for t in result.trials:
        assert (t.steps < t.total_steps) == (t.state == "pruned")
    assert result.best.state == "complete"


def test_the_saved_adapter_is_the_best_trials(tiny, tmp_path, sentiment):
    result = search(sentiment(48), 4, config=config(tiny), args=fast(), out_dir=tmp_path / "best")

    complete = [t for t in result.trials if t.state == "complete"]
    assert result.best.value == max(t.value for t in complete)
    assert result.best.number == min(t.number for t in complete if t.value == result.best.value)  # first on ties
    saved = PromptClassifier.from_pretrained(tmp_path / "best")
    assert saved.config.method.value == result.best.params["method"]
    assert saved.info["training"]["learning_rate"] == result.best.params["lr"]
    assert saved.info["search"]["best_trial"] == result.best.number and len(saved.info["search"]["trials"]) == 4
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in saved.state_dict().items())


def test_the_same_seed_gives_the_same_trials(tiny, sentiment):
    runs = [search(sentiment(48), 3, config=config(tiny), args=fast(seed=s)) for s in (5, 5, 6)]
    first, again, other = ([t.params for t in r.trials] for r in runs)
    assert first == again
    assert first != other


def test_settings_given_stay_fixed(tiny, sentiment):
    fixed = {**config(tiny), "method": "prompt", "num_virtual_tokens": 3}
    result = search(sentiment(48), 2, config=fixed, args=fast(lr=0.05))

    assert {(r["method"], r["num_virtual_tokens"], r["lr"]) for r in result.rows()} == {("prompt", 3, 0.05)}
    assert len({r["head_lr"] for r in result.rows()}) == 2  # still searched


def test_cancel_stops_the_search_with_the_best_so_far(tiny, sentiment):
    stop = threading.Event()
    result = search(sentiment(48), 5, config=config(tiny), args=fast(), cancel=stop, on_trial=lambda t: stop.set())

    assert len(result.trials) == 1 and result.cancelled
    assert result.best is result.trials[0]


def test_a_search_needs_validation_data(tiny, sentiment):
    with pytest.raises(ConfigError, match="validation"):
        search(sentiment(48), 2, config=config(tiny), args=fast(val_split=0.0))


def test_a_search_runs_in_one_process(tiny, sentiment, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process"):
        search(sentiment(48), 2, config=config(tiny), args=fast())


def test_the_time_budget_is_the_whole_searchs(tiny, sentiment):
    import time

    from ptuning.train import Callback

    class Slow(Callback):
        def on_step_end(self, state):
            time.sleep(0.05)

    began = time.monotonic()
    result = search(sentiment(64), 50, config=config(tiny), args=fast(epochs=3, time_budget=2.0), callbacks=[Slow()])
    assert time.monotonic() - began < 2.0 + 1.5  # one trial's last step and evaluation may end past it
    assert result.budget_reached and 1 <= len(result.trials) < 50
    # the search ended by the budget: its last trial was cut by it, or ended with too little time left for another
    from ptuning.search import MIN_TRIAL_SECONDS

    last = result.trials[-1]
    assert last.state == "out of time" or sum(t.seconds for t in result.trials) > 2.0 - MIN_TRIAL_SECONDS - 0.5
    assert all(t.state in ("complete", "pruned") for t in result.trials[:-1])  # no earlier trial was cut


def test_a_search_on_few_validation_texts_says_its_ranks_may_be_luck(tiny, sentiment, monkeypatch):
    few = search(sentiment(48), 1, config=config(tiny), args=fast())  # 12 validation texts
    monkeypatch.setattr("ptuning.search.MIN_SELECTION_EXAMPLES", 12)
    enough = search(sentiment(48), 1, config=config(tiny), args=fast())

    assert any("12 validation texts, too few to tell settings apart" in w for w in few.warnings)
    assert not any("too few to tell settings apart" in w for w in enough.warnings)


def test_the_first_trial_is_the_default_run_with_its_updates_and_their_epochs(tiny, sentiment):
    data, args = sentiment(48), fast(epochs=None, lr=None)
    result = search(data, 1, config=config(tiny), args=args)
    default = train(data, config=config(tiny), args=args)

    first = result.trials[0].params
    assert default.model.config.lora_rank == first["lora_rank"] == AUTO_LORA_RANK > 0
    assert default.model.config.start_layer == first["start_layer"] == 0
    assert (first["lr"], first["epochs"]) == (default.model.info["training"]["learning_rate"], default.state.epochs)
    assert result.trials[0].metrics == default.metrics


def test_the_first_trial_is_the_default_run_where_the_default_starts_later(tiny, sentiment, monkeypatch):
    from ptuning import plan

    monkeypatch.setattr(plan, "LATE_START_TEXTS", 48)  # the tiny data stands for 1,000 texts
    monkeypatch.setattr(plan, "AUTO_LORA_RANK", 0)  # the later start is the default of adapters without updates
    data, args = sentiment(48), fast(epochs=None, lr=None)
    result = search(data, 1, config=config(tiny), args=args)
    default = train(data, config=config(tiny), args=args)

    first = result.trials[0].params
    assert default.model.config.start_layer == first["start_layer"] == 1
    assert (first["lr"], first["epochs"]) == (default.model.info["training"]["learning_rate"], default.state.epochs)
    assert result.trials[0].metrics == default.metrics


def test_trials_try_low_rank_updates_and_without(tiny, sentiment, tmp_path):
    result = search(sentiment(48), 8, config=config(tiny), args=fast(), out_dir=tmp_path / "l")

    assert {t.params["lora_rank"] for t in result.trials} == {0, AUTO_LORA_RANK}
    saved = PromptClassifier.from_pretrained(tmp_path / "l").config
    assert saved.lora_rank == result.best.params["lora_rank"]
    line = next(t for t in result.trials if t.params["lora_rank"]).settings_line()
    assert f"rank-{AUTO_LORA_RANK} updates" in line


def test_deep_trials_try_later_starts_and_bias_offsets(tiny, sentiment, tmp_path):
    result = search(sentiment(48), 8, config={**config(tiny), "method": "deep", "lora_rank": 0}, args=fast(),
                    out_dir=tmp_path / "b")  # fmt: skip

    tried = {(t.params["start_layer"], t.params["bias_offsets"]) for t in result.trials}
    assert {s for s, _ in tried} == {0, 1} and {o for _, o in tried} == {False, True}
    saved = PromptClassifier.from_pretrained(tmp_path / "b").config  # the best trial's adapter is what it says
    assert (saved.start_layer, saved.bias_offsets) == (result.best.params["start_layer"], result.best.params["bias_offsets"])
    assert "from layer 1" in next(t for t in result.trials if t.params["start_layer"]).settings_line()
