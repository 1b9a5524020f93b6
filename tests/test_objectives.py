"""Constraints and objectives (issue #25): the feasible set, the Pareto front, the pick rule,
with the real packaged image backbones for the searches."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import yaml

from autotransfer import hookimpl
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.collect import reset_registry
from autotransfer.contract.manager import pm
from autotransfer.errors import SpaceError
from autotransfer.finetune.records import TrialWriter
from autotransfer.space.schema import parse_space
from autotransfer.study import selection
from autotransfer.study.study import search
from autotransfer_packaged import load_packaged

BACKBONES = ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0"]
SPACE = {
    "backbones": BACKBONES,
    "epochs": 1,
    "pruner": "none",
    "params": {"image_size": 32, "batch_size": 64,
               "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
}


def _run(fashion_mnist, tmp_path, space, trials=4, **options):
    # 4 trials: the linear probe and the default configuration of each backbone (references)
    return search(fashion_mnist, parse_space(space), trials=trials,
                  storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out", seed=0,
                  history=False, transfer_effect=False, **options)


def test_space_validates_objectives_constraints_and_pick():
    space = parse_space({**SPACE, "objectives": ["latency_ms", "macro_f1"]})
    assert space.metric == "macro_f1" and space.objective_names == ["macro_f1", "latency_ms"]
    for bad, said in (({"constraints": {"accuracy": 0.5}}, "constraints.accuracy"),
                      ({"constraints": {"latency_ms": 0}}, "must be > 0"),
                      ({"constraints": {"latency_ms": True}}, "latency_ms: expected a number"),
                      ({"objectives": ["latency_ms"]}, "expected one metric"),
                      ({"objectives": ["accuracy", "speed"]}, "unknown objective 'speed'"),
                      ({"pick": "latency_ms"}, "pick: 'latency_ms'")):
        with pytest.raises(SpaceError, match=said):
            parse_space({**SPACE, **bad})


def test_the_highest_score_over_a_bound_is_never_best():
    """A real Optuna study whose best-scoring trial is over the latency bound: the pick is the
    best feasible one, the front has no infeasible member."""
    study = optuna.create_study(directions=["maximize"])
    space = parse_space({**SPACE, "constraints": {"latency_ms": 5.0}})
    selection.start_selection(study, space)
    for score, latency in ((0.9, 8.0), (0.7, 3.0), (0.6, 4.0)):
        trial = study.ask()
        cost = {"latency_ms": latency}
        record = TrialWriter(trial)
        record.measured(cost, 0.0)
        record.violations(selection.violations(selection.rule_of(study), cost))
        study.tell(trial, score)
    assert selection.best_trial(study).number == 1
    assert study.best_trial.number == 1  # Optuna agrees: the bound is an Optuna constraint
    assert [r.number for r in selection.front_of(study)] == [1]


def test_a_params_bound_stops_the_larger_backbone_before_it_trains(fashion_mnist, tmp_path):
    # mobilenetv2_100 has about 2.2M parameters with a 10-class head, lite0 about 3.4M
    result = _run(fashion_mnist, tmp_path, {**SPACE, "constraints": {"params": 3.0e6}})
    by_backbone = {}
    for t in result.study.trials:
        by_backbone.setdefault(t.user_attrs["backbone"], []).append(t)
    for t in by_backbone["packaged/tf_efficientnet_lite0"]:
        assert t.state.name == "PRUNED"
        assert t.user_attrs["prune_reason"] == ("constraint: params 3,383,818 > 3,000,000 "
                                                "(counted before loading the weights; not "
                                                "started)")
        assert t.user_attrs["params_count"] == 3_383_818
        assert "parameter_count" not in t.user_attrs  # its weights never loaded
        assert not t.intermediate_values  # it never trained
    best = yaml.safe_load(result.best_path.read_text())
    assert best["backbone"] == "packaged/mobilenetv2_100"
    assert best["params_count"] <= 3.0e6
    rows = {r["trial"]: r for r in result.leaderboard}
    assert all(rows[t.number]["feasible"] is False
               for t in by_backbone["packaged/tf_efficientnet_lite0"])
    for t in by_backbone["packaged/mobilenetv2_100"]:  # measured after training
        a = t.user_attrs
        assert a["latency_ms"] > 0 and a["throughput"] > 0 and a["size_mb"] > 0
        assert a["size_mb"] == pytest.approx(a["params_count"] * 4 / 1e6, rel=0.05)


def test_a_latency_bound_no_trial_meets_names_the_least_violating(fashion_mnist, tmp_path,
                                                                  monkeypatch):
    # backbones without a device prior (a plugin's): measured after training, not pruned
    # before loading (tests/test_prior.py covers that)
    from autotransfer.study.budget import prior

    monkeypatch.setattr(prior, "prior_for", lambda *args, **kwargs: None)
    result = _run(fashion_mnist, tmp_path, {**SPACE, "constraints": {"latency_ms": 1e-4}})
    assert result.best is None and result.best_path is None  # no infeasible trial is best
    line = [w for w in result.warnings if w.startswith("no trial meets the constraints")]
    assert len(line) == 1 and "latency_ms" in line[0]
    complete = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert complete and all(not r["feasible"] for r in result.leaderboard
                            if r["state"] == "complete")
    least = min(complete, key=lambda t: t.user_attrs["latency_ms"])
    assert f"trial {least.number} " in line[0]
    # the sampler learns from them: each is an Optuna constraint of the trial
    assert all(t.constraints["latency_ms"] > 0 for t in complete)


def test_a_params_bound_no_configuration_meets_names_the_least_violating(fashion_mnist,
                                                                         tmp_path):
    """Every trial is stopped before it loads a weight, so none completes: the end line still
    names the smallest model and by how much, not a bare "no trial completed"."""
    result = _run(fashion_mnist, tmp_path, {**SPACE, "constraints": {"params": 1.0e6}})
    assert result.best is None
    assert all(t.state.name == "PRUNED" for t in result.study.trials)
    line = [w for w in result.warnings if w.startswith("no trial meets the constraints")]
    assert len(line) == 1
    smallest = min(result.study.trials, key=lambda t: t.user_attrs["params_count"])
    assert smallest.user_attrs["backbone"] == "packaged/mobilenetv2_100"
    assert f"trial {smallest.number} (packaged/mobilenetv2_100): params " in line[0]
    assert f"params {smallest.user_attrs['params_count']:,} > 1,000,000 (+" in line[0]


def test_two_objectives_give_a_front_in_best_yaml_and_train_trial_refits_one(
        fashion_mnist, tmp_path):
    from typer.testing import CliRunner

    from autotransfer.cli.app import app

    result = _run(fashion_mnist, tmp_path, {**SPACE, "objectives": ["accuracy", "latency_ms"],
                                            "pruner": "hyperband"})
    study = result.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val accuracy", "latency_ms"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and not any(t.intermediate_values for t in complete)  # no pruning
    # the leaderboard counts the epochs each trained all the same (1 of 1), not the reports
    assert all(r["epochs"] == 1 for r in result.leaderboard if r["state"] == "complete")
    best = yaml.safe_load(result.best_path.read_text())
    front = best["pareto_front"]
    numbers = {m["trial"] for m in front}
    assert numbers == {t.number for t in study.best_trials}  # Optuna's own front agrees
    assert best["source"]["trial"] == max(front, key=lambda m: m["val_score"])["trial"]
    for member in front:
        values = study.trials[member["trial"]].values
        assert member["val_score"] == values[0] and member["latency_ms"] == values[1]
    assert (tmp_path / "out" / "pareto_front.png").is_file()
    assert (tmp_path / "out" / "pareto_front.html").is_file()

    # refit a trial that is not the picked one (of the front when it has two members)
    others = sorted(numbers - {best["source"]["trial"]}) or [
        t.number for t in complete if t.number != best["source"]["trial"]]
    chosen = others[0]
    run = CliRunner().invoke(app, ["train", str(result.best_path), "--out",
                                   str(tmp_path / "model"), "--refit-on", "train",
                                   "--trial", str(chosen), "--device", "cpu"],
                             catch_exceptions=False)
    assert run.exit_code == 0, run.output
    meta = yaml.safe_load((tmp_path / "model" / "autotransfer.json").read_text())
    trained = study.trials[chosen]
    assert meta["backbone"] == trained.user_attrs["backbone"]
    assert meta["params"]["lr"] == pytest.approx(trained.user_attrs["params"]["lr"])


def test_the_cli_ends_with_the_least_violating_trial_when_none_is_feasible(
        capsys, fashion_mnist, tmp_path):
    from conftest import cli_error

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SPACE, "backbones": BACKBONES[:1],
                                     "constraints": {"size_mb": 1.0}}))
    err = cli_error(capsys, "search", str(fashion_mnist), "--space", str(space), "--trials", "1",
                    "--no-references", "--no-history", "--storage",
                    f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "out"))
    assert "no trial meets the constraints; the least violating is trial 0" in err
    assert "size_mb" in err and "> 1" in err
    rows = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    assert "infeasible: size_mb" in rows[1]  # the results are written all the same


def _study_of(space, trials):
    """A real Optuna study with the space's rule and trials of (values, latency, size)."""
    from autotransfer.study.selection import Rule

    study = optuna.create_study(directions=Rule.of_space(space).directions)
    selection.start_selection(study, space)
    for values, cost in trials:
        trial = study.ask()
        record = TrialWriter(trial)
        record.measured(cost, 0.0)
        record.violations(selection.violations(selection.rule_of(study), cost))
        study.tell(trial, values)
    return study


def test_the_front_is_the_non_dominated_feasible_trials_and_pick_chooses_among_them():
    two = {**SPACE, "objectives": ["accuracy", "latency_ms"], "constraints": {"size_mb": 10}}
    trials = [((0.9, 8.0), {"latency_ms": 8.0, "size_mb": 9}),   # front: best score
              ((0.8, 3.0), {"latency_ms": 3.0, "size_mb": 9}),   # front: fastest feasible
              ((0.7, 5.0), {"latency_ms": 5.0, "size_mb": 9}),   # dominated by #1
              ((0.95, 1.0), {"latency_ms": 1.0, "size_mb": 50})]  # dominates all, infeasible
    study = _study_of(parse_space(two), trials)
    assert [r.number for r in selection.front_of(study)] == [0, 1]  # ranked by the score
    assert selection.best_trial(study).number == 0
    faster = _study_of(parse_space({**two, "pick": "latency_ms"}), trials)
    assert selection.best_trial(faster).number == 1
    # Optuna's own front, told the same constraints, agrees
    assert sorted(t.number for t in study.best_trials) == [0, 1]
    from autotransfer.study.results.dashboard import _front_line  # the dashboard note says the same

    assert "trials 0, 1 (best: the first by accuracy)" in _front_line(study)[1]


@pytest.mark.parametrize("backbone_id", [*BACKBONES, "packaged/tf_efficientnet_lite1",
                                         "packaged/tf_efficientnet_lite2",
                                         "packaged/all-MiniLM-L6-v2"])
def test_the_count_before_loading_is_the_count_after(backbone_id):
    """The meta-device count (no weight loaded) of each packaged backbone with a 10-class head
    is exactly the parameters of the model the trainer builds from the loaded weights."""
    from autotransfer.contract.collect import get_registry
    from autotransfer.finetune.cost import architecture_params
    from autotransfer.finetune.trainer import TransferModel
    from autotransfer.space.hyperparameters import defaults

    entry = get_registry().get(backbone_id)
    counted = architecture_params(entry, {}, 10, defaults())
    loaded = entry.load(pretrained=True)
    assert counted == sum(p.numel() for p in TransferModel(loaded, 10).parameters())


def test_a_zoo_that_cannot_build_on_meta_leaves_the_count_after_loading():
    """A loader that reads a tensor's value cannot build on the meta device: the count before
    loading says nothing (None) and the bound is checked after loading, as before."""
    import torch

    from autotransfer.contract.backbone import Backbone, BackboneEntry
    from autotransfer.finetune.cost import architecture_params
    from autotransfer.finetune.trainer import TransferModel
    from autotransfer.study.budget.measure import check_params_before_load, check_params_bound

    def load(pretrained=True):
        layer = torch.nn.Linear(4, 8)
        if layer.weight.detach().abs().sum().item() < 0:  # reads a value: not on meta
            raise AssertionError
        return Backbone(model=layer, dim=8, groups=[["weight", "bias"]], preprocess=None)

    entry = BackboneEntry(id="tiny/reads-values", modality="image", loader=load)
    assert architecture_params(entry, {}, 3, {}) is None
    rule = selection.Rule(constraints={"params": 10})
    study = optuna.create_study()
    trial = study.ask()
    check_params_before_load(trial, entry, {}, 3, {}, rule)  # cannot say: the trial goes on
    with pytest.raises(optuna.TrialPruned, match=r"params 67 > 10 \(counted after loading"):
        check_params_bound(trial, TransferModel(entry.load(), 3), rule)


class BlindZoo:
    """``blind/mobilenetv2_100``: mobilenetv2_100's real weights (9.1 MB, under the bound) behind
    features that are always zero, so that it cannot score above chance and the larger lite0
    is the higher-scoring backbone by construction (training noise cannot swap them)."""

    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("blind/mobilenetv2_100", "image", loader=_blind))


def _blind(pretrained=True):
    backbone = load_packaged("mobilenetv2_100", pretrained=pretrained)
    backbone.model.register_forward_hook(lambda module, args, out: out * 0)
    return dataclasses.replace(backbone, split=None)  # every forward goes through the hook


@pytest.fixture
def blind_zoo():
    pm.register(BlindZoo(), name="blind-zoo")
    reset_registry()
    try:
        yield
    finally:
        pm.unregister(name="blind-zoo")
        reset_registry()


def test_a_size_bound_never_lets_the_higher_scoring_larger_backbone_be_best(fashion_mnist,
                                                                            tmp_path, blind_zoo):
    """lite0 (13.7 MB) trains, scores higher than a 9.1 MB backbone that cannot beat chance and
    is over the 10 MB bound: best.yaml, the leaderboard's first row and the references never
    name it."""
    small, large = "blind/mobilenetv2_100", BACKBONES[1]
    space = {**SPACE, "backbones": [small, large], "constraints": {"size_mb": 10.0},
             "params": {**SPACE["params"], "image_size": 64}}
    result = _run(fashion_mnist, tmp_path, space)
    trials = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    top = max(trials, key=lambda t: t.value)
    assert top.user_attrs["backbone"] == large and top.user_attrs["size_mb"] > 10
    best = yaml.safe_load(result.best_path.read_text())
    assert best["backbone"] == small and best["size_mb"] <= 10
    assert result.study.trials[best["source"]["trial"]].value < top.value
    assert result.leaderboard[0]["trial"] == best["source"]["trial"]
    assert result.leaderboard[0]["feasible"] is True
    assert {ref["backbone"] for ref in best["references"].values()} == {small}


def _measured_study(objectives: list[str], trials: list[tuple[float, dict[str, float]]]):
    """An in-memory study of ``objectives`` whose completed trials scored and measured as
    given (no training: the front plot reads only the records)."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    space = parse_space({"backbones": ["zoo/a"], "epochs": 1, "objectives": objectives})
    rule = selection.Rule.of_space(space)
    study = optuna.create_study(directions=rule.directions)
    selection.start_selection(study, space)
    for score, cost in trials:
        values = selection.objective_values(rule, score, cost)
        study.add_trial(create_trial(
            values=list(values), params={"backbone": "zoo/a"},
            distributions={"backbone": CategoricalDistribution(["zoo/a"])},
            user_attrs={"backbone": "zoo/a", **cost}))
    return study


@pytest.mark.parametrize("cost", ["size_mb", "throughput"])
def test_the_front_plot_draws_the_study_own_cost_and_its_direction(cost):
    # the bug: the plot always drew latency_ms, whatever the objectives, so with size_mb or a
    # maximised throughput the drawn "front" was not the study's front
    from autotransfer.study.results.front_plots import front_plots

    measured = [(0.9, {"size_mb": 9.0, "throughput": 900.0, "latency_ms": 1.0}),
                (0.8, {"size_mb": 2.0, "throughput": 100.0, "latency_ms": 2.0}),
                (0.7, {"size_mb": 5.0, "throughput": 950.0, "latency_ms": 3.0})]
    study = _measured_study(["accuracy", cost], measured)
    figure = front_plots(study, "accuracy", {})["pareto_front"][0]()
    traces = {t.name: t for t in figure.data}
    assert list(traces["feasible"].x) == [m[1][cost] for m in measured]
    front = sorted(zip(traces["Pareto front"].x, traces["Pareto front"].y, strict=True))
    if cost == "size_mb":  # minimised: 9 MB at 0.9 and 2 MB at 0.8; 5 MB at 0.7 is dominated
        assert front == [(2.0, 0.8), (9.0, 0.9)] and traces["Pareto front"].line.shape == "hv"
    else:  # maximised: 900/s at 0.9 and 950/s at 0.7; 100/s at 0.8 is dominated
        assert front == [(900.0, 0.9), (950.0, 0.7)]
        assert traces["Pareto front"].line.shape == "vh"
    assert cost in figure.layout.xaxis.title.text


def test_a_maximised_cost_is_bounded_from_below():
    rule = selection.Rule(("accuracy",), {"throughput": 500.0, "latency_ms": 2.0})
    assert selection.violations(rule, {"throughput": 400.0, "latency_ms": 1.5}) == {
        "throughput": 100.0, "latency_ms": -0.5}


def test_the_ensemble_is_a_point_of_the_front_and_of_its_plot():
    # an ensemble of trials 0 and 1: held-out 0.85 at 11 MB (their sizes added); trial 0
    # (0.9 at 9 MB) dominates it, so it is not on the front; at 0.95 it is
    from autotransfer.study.results.ensemble import front_point
    from autotransfer.study.results.front_plots import front_plots

    study = _measured_study(["accuracy", "size_mb"], [(0.9, {"size_mb": 9.0}),
                                                      (0.8, {"size_mb": 2.0})])
    section = {"members": [{"trial": 0}, {"trial": 1}], "val_score": 0.85, "size_mb": 11.0}
    assert front_point(study, section) == {
        "objectives": {"accuracy": 0.85, "size_mb": 11.0}, "on_front": False,
        "dominated_by": [0], "score": front_point(study, section)["score"]}
    assert front_point(study, {**section, "val_score": 0.95})["on_front"]
    assert front_point(study, {**section, "size_mb": None}) is None  # a cost not measured

    figure = front_plots(study, "accuracy", {}, section)["pareto_front"][0]()
    star = {t.name: t for t in figure.data}["ensemble"]
    assert (list(star.x), list(star.y)) == ([11.0], [0.85])
    assert "ensemble of trials 0+1" in star.text[0]
    axes = front_plots(study, "accuracy", {}, section)["pareto_front"][1]()
    assert "ensemble" in [t.get_text() for t in axes.get_legend().get_texts()]
    assert "ensemble" not in {t.name for t in front_plots(
        study, "accuracy", {}, {"members": []})["pareto_front"][0]().data}

    from autotransfer.study.results.report import _front_lines

    best = {"objectives": ["accuracy", "size_mb"], "pick": "accuracy", "source": {"trial": 0},
            "pareto_front": [{"trial": 0, "backbone": "zoo/a", "val_score": 0.9,
                              "size_mb": 9.0}],
            "ensemble": {**section, "pareto": front_point(study, section)}}
    lines = _front_lines(best)
    assert any(line.startswith("| ensemble | trials 0+1 | 0.85") for line in lines)
    assert any("dominated by trial(s) 0" in line for line in lines)
