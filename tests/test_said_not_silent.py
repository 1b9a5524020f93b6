"""What a search does not do is said, in one line, where it happens: an explicit pruner in a
multi-objective space, a resumed study's sampler."""

import warnings

import optuna
import pytest

from autotransfer.space.schema import parse_space
from autotransfer.study.budget.pruners import PrunerWarning, make_pruner, resumed_line
from autotransfer.study.budget.rungs import fitted_pruner

FRONT = {"backbones": ["packaged/mobilenetv2_100"], "epochs": 2,
         "objectives": ["accuracy", "size_mb"], "params": {"lr": 1e-3}}


def test_an_explicit_pruner_with_several_objectives_is_named_as_unused():
    space = parse_space({**FRONT, "pruner": "hyperband"})
    with pytest.warns(PrunerWarning) as caught:
        pruner = make_pruner(space, say=True)
    (line,) = [str(w.message) for w in caught]
    assert line.startswith("pruner: hyperband is not used with several objectives")
    assert "accuracy, size_mb" in line and "pruner: none" in line
    assert isinstance(pruner, optuna.pruners.NopPruner)
    fitted, said = fitted_pruner(space, expected=4)  # no successive-halving line either
    assert isinstance(fitted, optuna.pruners.NopPruner) and said is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_pruner(parse_space(FRONT), say=True)  # the default pruner: nothing to say
        make_pruner(parse_space({**FRONT, "pruner": "none"}), say=True)
        make_pruner(space)  # a worker process: the search said it


def test_a_resumed_study_says_how_its_sampler_is_seeded(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    assert resumed_line(study, 0, 0) is None  # a new study: nothing to say
    study.add_trial(optuna.trial.create_trial(value=0.5))
    line = resumed_line(study, 7, 8)
    assert line.startswith("sampler: seeded with 8 (seed 7 + this study's worker 1)")
    assert "1 finished trial(s)" in line and "than one run of the whole total" in line


class _AlwaysLast(optuna.samplers.RandomSampler):
    """A sampler that always draws the last choice (as TPE kept drawing the big backbone)."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        if param_name == "backbone":
            return param_distribution.choices[-1]
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_a_backbone_over_the_params_bound_is_not_drawn_again():
    from autotransfer.finetune.records import TrialWriter
    from autotransfer.study.budget.infeasible import InfeasibleWarning, exclude_infeasible

    space = parse_space({"backbones": ["packaged/mobilenetv2_100",
                                       "packaged/tf_efficientnet_lite0"],
                         "epochs": 1, "constraints": {"params": 3e6}, "params": {"lr": 1e-3}})
    study = optuna.create_study(sampler=exclude_infeasible(_AlwaysLast(seed=0), space, 0))
    choices = optuna.distributions.CategoricalDistribution([b.label for b in space.backbones])
    first = study.ask({"backbone": choices})
    assert first.params["backbone"] == "packaged/tf_efficientnet_lite0"
    reason = "constraint: params 3,373,570 > 3,000,000 (counted before loading the weights)"
    TrialWriter(first).pruned(reason)
    study.tell(first, state=optuna.trial.TrialState.PRUNED)
    with pytest.warns(InfeasibleWarning, match="tf_efficientnet_lite0 is not drawn again: "
                      "constraint: params 3,373,570"):
        drawn = [study.ask({"backbone": choices}).params["backbone"] for _ in range(4)]
    assert drawn == ["packaged/mobilenetv2_100"] * 4
    lora = optuna.create_study(sampler=exclude_infeasible(_AlwaysLast(seed=0), space, 0))
    trial = lora.ask({"backbone": choices})
    TrialWriter(trial).started(backbone="x", pretrained=True, params={"method": "lora"},
                               device="cpu", classes=["a", "b"], seed=0)
    TrialWriter(trial).pruned(reason)  # over the bound with adapters: the plain one may fit
    lora.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert lora.ask({"backbone": choices}).params["backbone"].endswith("lite0")


def test_the_study_note_agrees_with_the_trials_when_none_is_feasible(class_folders, tmp_path):
    """Two trials completed over a latency bound: the note said "no completed trial yet";
    it says how many completed and that none meets the bounds, naming the least violating."""
    from autotransfer.data import load_data
    from autotransfer.finetune.records import TrialWriter
    from autotransfer.study.results.dashboard import StudyNote
    from autotransfer.study.selection import Rule, start_selection, violations

    space = parse_space({"backbones": ["packaged/mobilenetv2_100"], "epochs": 1,
                         "constraints": {"latency_ms": 0.001}, "params": {"lr": 1e-3}})
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s",
                                direction="maximize")
    start_selection(study, space)
    note = StudyNote(load_data(class_folders), space, space_file=None, storage="s", trials=2)
    assert "no completed trial yet" in note.body(study)
    for latency in (2656.5, 725.9):
        trial = study.ask()
        writer = TrialWriter(trial)
        writer.started(backbone="packaged/mobilenetv2_100", pretrained=True, params={},
                       device="cpu", classes=["a", "b"], seed=0)
        writer.measured({"latency_ms": latency}, 0.0)
        writer.violations(violations(Rule.of_space(space), {"latency_ms": latency}))
        study.tell(trial, 1.0)
    body = note.body(study)
    assert "no completed trial yet" not in body
    assert "no trial within the constraints: 2 completed, none meets them" in body
    assert "least violating is trial 1" in body
