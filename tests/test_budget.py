"""How a small budget is spent (issue #29): the space's ``budget`` switches, the measured cost of
each backbone (``study.budget.backbone_cost``), the rungs fitted to the expected trials and the
cost-aware starts (the references' order and share: tests/test_references.py). Tiny timm models
built from a config (plumbing, not transfer); a fake clock (``timebudget.now``) wherever a test
is about time, so that none of them measures it."""

import time

import optuna
import pytest
import timm
import torch
import yaml
from optuna.trial import TrialState, create_trial

from autotransfer import hookimpl
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.collect import reset_registry
from autotransfer.contract.manager import pm
from autotransfer.errors import SpaceError
from autotransfer.finetune.records import StudyRecord
from autotransfer.space.schema import parse_space
from autotransfer.study.budget import backbone_cost
from autotransfer.study.store.storage import make_storage
from autotransfer.study.study import search
from autotransfer_timm import backbone_from_timm


class TinyZoo:
    @hookimpl
    def register_backbones(self, register):
        for name in ("a", "b"):
            register(BackboneEntry(f"tiny/{name}", "image", loader=_tiny))


def _tiny(pretrained=True):
    torch.manual_seed(1234)
    return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))


@pytest.fixture
def tiny_zoo():
    pm.register(TinyZoo(), name="tiny-budget-zoo")
    reset_registry()
    try:
        yield
    finally:
        pm.unregister(name="tiny-budget-zoo")
        reset_registry()


SPACE = {
    "backbones": ["tiny/a", "tiny/b"],
    "epochs": 1,
    "pruner": "none",
    "params": {"image_size": 32, "batch_size": 8,
               "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
               "augment": "none"},
}


# --- the switches -------------------------------------------------------------------------


def test_the_budget_switches_default_to_everything_on_and_parse():
    plan = parse_space(SPACE).budget
    assert (plan.reference_order, plan.rungs, plan.cost_aware) == ("ranked", "fitted", True)
    assert plan.reference_share == pytest.approx(1 / 3) and plan.is_default()
    off = parse_space({**SPACE, "budget": yaml.safe_load(
        "{reference_order: listed, reference_share: 1, rungs: off, cost_aware: false}")})
    assert off.budget.model_dump() == {"reference_order": "listed", "reference_share": 1.0,
                                       "rungs": "off", "cost_aware": False, "patience": None}


@pytest.mark.parametrize("budget, message", [
    ({"reference_order": "random"}, "budget.reference_order: must be ranked or listed, "
                                    "got 'random'"),
    ({"reference_share": 0}, "budget.reference_share: must be a fraction in (0, 1], got 0"),
    ({"reference_share": 1.5}, "budget.reference_share: must be a fraction in (0, 1], got 1.5"),
    ({"rungs": "sometimes"}, "budget.rungs: must be fitted, pruner or off, got 'sometimes'"),
    ({"cost_aware": "yes"}, "budget.cost_aware: must be true or false, got 'yes'"),
    ({"share": 0.5}, "unknown key 'share' in budget"),
])
def test_a_bad_switch_is_one_line_naming_the_key_and_the_value(budget, message):
    with pytest.raises(SpaceError) as error:
        parse_space({**SPACE, "budget": budget}, "space.yaml")
    assert str(error.value) == f"space.yaml: {message}"


def _study(tmp_path, name="q"):
    storage = make_storage(f"sqlite:///{tmp_path}/q.db")
    return optuna.create_study(study_name=name, storage=storage, direction="maximize"), storage


# --- the measured cost ---------------------------------------------------------------------


def test_the_cost_formula_scales_with_freezing_epochs_and_input_size():
    cost = {"load_seconds": 1.0, "train_sample_seconds": 0.03, "eval_sample_seconds": 0.01,
            "size": 96.0, "size_key": "image_size", "batch_size": 32, "n_train": 100,
            "n_val": 50}
    full = {"freeze_fraction": 0.0, "image_size": 96}
    assert backbone_cost.epoch_seconds(cost, full) == pytest.approx(3.0 + 0.5)
    assert backbone_cost.estimate(cost, full, epochs=3) == pytest.approx(1.0 + 3 * 3.5)
    probe = {"freeze_fraction": 1.0, "image_size": 96}  # features once, then a head
    assert backbone_cost.estimate(cost, probe, epochs=3) == pytest.approx(1.0 + 150 * 0.01)
    twice = {"freeze_fraction": 0.0, "image_size": 192}  # four times the pixels
    assert backbone_cost.estimate(cost, twice) == pytest.approx(1.0 + 4 * 3.5)
    lora = {"freeze_fraction": 1.0, "method": "lora", "image_size": 96}
    assert backbone_cost.estimate(cost, lora) == backbone_cost.estimate(cost, full)


def test_the_timed_step_is_recorded_once_per_study_and_reused_on_resume(
        tiny_zoo, class_folders, tmp_path, monkeypatch):
    calls = []
    real = backbone_cost.measure_cost

    def counted(entry, spec, *args, **kwargs):
        calls.append(spec.id)
        return real(entry, spec, *args, **kwargs)

    monkeypatch.setattr(backbone_cost, "measure_cost", counted)
    run = dict(storage=f"sqlite:///{tmp_path}/s.db", study_name="s", out=tmp_path / "out",
               history=False)
    search(class_folders, parse_space(SPACE), trials=2, **{**run, "study_name": "probes"})
    assert calls == []  # room for the two linear probes alone: nothing would use a cost
    first = search(class_folders, parse_space(SPACE), trials=3, **run)
    assert calls == ["tiny/a", "tiny/b"]  # by the default trial after the probes
    costs = StudyRecord.of(first.study).costs
    assert set(costs) == {"tiny/a", "tiny/b"}
    for cost in costs.values():
        assert cost["train_sample_seconds"] > 0 and cost["eval_sample_seconds"] > 0
        assert (cost["n_train"], cost["n_val"], cost["size"]) == (16, 4, 32.0)
    search(class_folders, parse_space(SPACE), trials=4, **run)  # resumed: read back
    assert calls == ["tiny/a", "tiny/b"]
    # one backbone, no budget: nothing uses a cost, none is timed
    search(class_folders, parse_space({**SPACE, "backbones": ["tiny/a"]}), trials=1,
           **{**run, "study_name": "one"})
    assert calls == ["tiny/a", "tiny/b"]
    # room for one of two probes: the cheaper runs, so both are timed
    search(class_folders, parse_space(SPACE), trials=1, **{**run, "study_name": "cheapest"})
    assert calls == ["tiny/a", "tiny/b"] * 2


@pytest.mark.parametrize("budget", [None, 600])
def test_without_a_budget_the_timed_step_waits_for_the_linear_probes(
        budget, tiny_zoo, class_folders, tmp_path, monkeypatch):
    """Nothing before the first sampled trial reads a cost unless a time budget's start rule
    does: timed first, the step delayed the first batch of ``make demo`` by 2.8 s."""
    stamps = []
    real = backbone_cost.measure_cost

    def stamped(*args, **kwargs):
        stamps.append(time.time())
        return real(*args, **kwargs)

    monkeypatch.setattr(backbone_cost, "measure_cost", stamped)
    result = search(class_folders, parse_space(SPACE), trials=4, time_budget=budget,
                    storage=f"sqlite:///{tmp_path}/s.db", study_name="s",
                    out=tmp_path / "out", history=False)
    trials = result.study.trials
    assert len(stamps) == 2 and set(StudyRecord.of(result.study).costs) == {"tiny/a", "tiny/b"}
    if budget is None:  # after both probes, before the first default trains
        assert [t.user_attrs.get("reference") for t in trials[:2]] == ["linear_probe"] * 2
        assert min(stamps) > max(t.datetime_complete.timestamp() for t in trials[:2])
        assert max(stamps) < trials[2].user_attrs["first_batch_at"]
    else:  # the first fine-tune runs first, untimed (its first epoch measures it), then the
        # probes; the step runs after them, before the next first fine-tune trains
        kinds = [t.user_attrs.get("reference") for t in trials]
        assert kinds == ["default", "linear_probe", "linear_probe", "default"]
        assert min(stamps) > max(t.datetime_complete.timestamp() for t in trials[:3])
        assert max(stamps) < trials[3].user_attrs["first_batch_at"]


def test_the_timed_step_leaves_out_a_process_s_slow_first_batches(tiny_zoo, class_folders):
    """In a fresh search process the first three training batches ran 4x slower than the next
    (the first backbone then looked 3x dearer): the step warms up past them."""
    from autotransfer.contract.collect import get_registry
    from autotransfer.data import load_data

    space = parse_space(SPACE)
    spec = space.backbones[0]
    entry = get_registry().get(spec.id)
    slow = []

    def slow_start(*args, **kwargs):
        backbone = entry.loader(*args, **kwargs)

        def pause(module, inputs):
            if module.training and len(slow) < 3:
                slow.append(1)
                time.sleep(0.3)
        backbone.model.register_forward_pre_hook(pause)
        return backbone

    slowed = BackboneEntry(spec.id, "image", loader=slow_start)
    cost = backbone_cost.measure_cost(slowed, spec, load_data(class_folders),
                                      backbone_cost.step_params(space), torch.device("cpu"))
    assert len(slow) == 3  # the three slow batches ran
    assert cost["train_sample_seconds"] * cost["batch_size"] < 0.15  # and were not timed


def test_a_stop_during_the_timed_step_fails_its_trial_as_interrupted(
        tiny_zoo, class_folders, tmp_path, monkeypatch):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the first default trial times the backbones

    monkeypatch.setattr(backbone_cost, "measure_cost", stopped)
    url = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(KeyboardInterrupt):
        search(class_folders, parse_space(SPACE), trials=3, storage=url, study_name="s",
               out=tmp_path / "out", history=False)
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    assert trials[2].user_attrs["fail_reason"].startswith("interrupted by ")
    assert trials[2].user_attrs["interrupted"] is True  # it does not count towards --trials


def test_workers_timing_the_backbones_together_time_each_once(
        tiny_zoo, class_folders, tmp_path, monkeypatch):
    """Two workers reach their first default trial at once (each after its own probe): one
    times the backbones under the study lock, the other waits and reads them back."""
    import threading

    from autotransfer.data import load_data
    from autotransfer.study.store.storage import StudyLock

    calls = []
    real = backbone_cost.measure_cost

    def counted(entry, spec, *args, **kwargs):
        calls.append(spec.id)
        time.sleep(0.2)  # both workers are inside the step at the same time
        return real(entry, spec, *args, **kwargs)

    monkeypatch.setattr(backbone_cost, "measure_cost", counted)
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    space, data = parse_space(SPACE), load_data(class_folders)
    found = []

    def worker():
        found.append(backbone_cost.measure_costs(study, StudyLock(storage, "s"), space, data,
                                                 torch.device("cpu")))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(calls) == ["tiny/a", "tiny/b"]
    assert found[0] == found[1] == StudyRecord.of(study).costs


# --- the rungs ----------------------------------------------------------------------------


def test_a_hyperband_too_wide_for_the_expected_trials_becomes_one_bracket_from_epoch_one():
    from autotransfer.study.budget.rungs import expected_trials, fitted_pruner

    space = parse_space({**SPACE, "epochs": 3, "pruner": "hyperband"})
    pruner, line = fitted_pruner(space, 10)  # 2 brackets need 2 * 3**2 = 18 trials
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert line == ("rungs: successive halving from epoch 1, the top 1/3 of each rung goes on "
                    "(~10 trials expected; hyperband's 2 brackets need 18)")
    assert isinstance(fitted_pruner(space, 18)[0], optuna.pruners.HyperbandPruner)
    assert isinstance(fitted_pruner(space, None)[0], optuna.pruners.HyperbandPruner)
    as_set = parse_space({**space.model_dump(), "budget": {"rungs": "pruner"}})
    pruner, line = fitted_pruner(as_set, 10)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner) and line is None
    off = parse_space({**space.model_dump(), "budget": {"rungs": "off"}})
    assert isinstance(fitted_pruner(off, 10)[0], optuna.pruners.NopPruner)
    median = parse_space({**SPACE, "epochs": 3, "pruner": "median"})
    assert isinstance(fitted_pruner(median, 10)[0], optuna.pruners.MedianPruner)
    # no trial count: the budget over the measured seconds to a first report
    cost = {"load_seconds": 1.0, "train_sample_seconds": 0.1, "eval_sample_seconds": 0.1,
            "size": 32.0, "size_key": "image_size", "batch_size": 8, "n_train": 30, "n_val": 10}
    assert expected_trials(space, None, 100.0, {"tiny/a": cost, "tiny/b": cost}) == 20
    assert expected_trials(space, 7, 100.0, {}) == 7
    assert expected_trials(space, None, None, {"tiny/a": cost}) is None


# --- cost-aware starts ----------------------------------------------------------------------


def _completed(study, label, value, reference=None):
    distribution = optuna.distributions.CategoricalDistribution(["tiny/a", "tiny/b"])
    study.add_trial(create_trial(params={"backbone": label}, distributions={"backbone":
                                 distribution}, value=value,
                                 user_attrs={"reference": reference} if reference else {}))


def _costs(study, a, b):
    cost = {"load_seconds": 0.0, "eval_sample_seconds": 0.0, "size": 32.0,
            "size_key": "image_size", "batch_size": 8, "n_train": 100, "n_val": 100}
    study.set_user_attr("backbone_costs", {"tiny/a": {**cost, "train_sample_seconds": a},
                                           "tiny/b": {**cost, "train_sample_seconds": b}})


def test_among_backbones_of_similar_promise_the_cheaper_is_drawn_more(tmp_path):
    from autotransfer.study.budget.cost_aware import EARLY_TRIALS, backbone_weights, wrap

    study, _ = _study(tmp_path)
    space = parse_space(SPACE)
    _costs(study, a=0.04, b=0.01)  # b is four times cheaper
    weights = backbone_weights(study, space, before=99)
    assert weights["tiny/b"] == pytest.approx(4 * weights["tiny/a"])  # nothing scored yet
    _completed(study, "tiny/a", 0.80, "linear_probe")
    _completed(study, "tiny/b", 0.75, "linear_probe")  # within 2 SE (0.08) of 0.80
    assert backbone_weights(study, space, before=99)["tiny/b"] > 0
    _completed(study, "tiny/a", 0.95, "default")  # now b is far below: not similar
    assert backbone_weights(study, space, before=99) == {"tiny/a": pytest.approx(1 / 4.0),
                                                         "tiny/b": 0.0}
    # the wrapped sampler draws the early trials' backbone by those weights, seeded
    cheap, _ = _study(tmp_path, "cheap")
    _costs(cheap, a=0.09, b=0.01)
    cheap.sampler = wrap(optuna.samplers.RandomSampler(seed=0), space, seed=0)
    drawn = []
    for _ in range(EARLY_TRIALS + 20):
        trial = cheap.ask()
        drawn.append(space.suggest(trial)[0].label)
        cheap.tell(trial, state=TrialState.PRUNED)
    assert drawn[:EARLY_TRIALS].count("tiny/b") >= 4  # p = 0.9 each
    assert drawn[EARLY_TRIALS:].count("tiny/a") >= 5  # then the random sampler alone
    # a multivariate TPE past its start-up still leaves the early trials' backbone to the draw
    tpe, _ = _study(tmp_path, "tpe")
    _costs(tpe, a=0.09, b=0.01)
    tpe.sampler = wrap(optuna.samplers.TPESampler(multivariate=True, n_startup_trials=1,
                                                  seed=0), space, seed=0)
    early = []
    for _ in range(EARLY_TRIALS):
        trial = tpe.ask()
        early.append(space.suggest(trial)[0].label)
        tpe.tell(trial, 0.5)
    assert early.count("tiny/b") >= 4
    off = parse_space({**SPACE, "budget": {"cost_aware": False}})
    sampler = optuna.samplers.RandomSampler(seed=0)
    assert wrap(sampler, off, seed=0) is sampler


def test_the_cost_aware_draw_works_under_hyperband_whose_samplers_see_one_bracket(tmp_path):
    # optuna hands a sampler a per-bracket view of the study under HyperbandPruner (no user
    # attributes, other brackets' trials hidden); the draw read the costs from it and every
    # early sampled trial failed before it had a backbone (oracle benchmark, 1/4 budget)
    from autotransfer.study.budget.cost_aware import EARLY_TRIALS, wrap

    study, _ = _study(tmp_path, "hb")
    _costs(study, a=0.09, b=0.01)
    space = parse_space(SPACE)
    study.pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9,
                                                  reduction_factor=3)
    study.sampler = wrap(optuna.samplers.TPESampler(seed=0), space, seed=0)

    def objective(trial):
        label = space.suggest(trial)[0].label
        trial.report(0.5, 1)
        return 0.5 if label == "tiny/a" else 0.6

    study.optimize(objective, n_trials=EARLY_TRIALS + 2)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE] * (EARLY_TRIALS + 2)
    early = [t.params["backbone"] for t in study.get_trials()[:EARLY_TRIALS]]
    assert early.count("tiny/b") >= 4  # p = 0.9 each, drawn from the whole study's costs
