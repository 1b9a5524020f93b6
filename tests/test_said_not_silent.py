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
