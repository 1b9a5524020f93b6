import json

import optuna
import pytest

from autotransfer.errors import SpaceError
from autotransfer.space.hyperparameters import HYPERPARAMETERS
from autotransfer.space.schema import load_space, parse_space

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _space(**overrides):
    data = {"backbones": ["packaged/mobilenetv2_100"], "epochs": 2}
    data.update(overrides)
    return data


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml")))
def test_shipped_spaces_are_valid(name):
    space = load_space(REPO / "search_spaces" / name)
    assert space.backbones and space.epochs >= 1


def test_mapping_entry_adds_options_and_gets_its_own_label():
    space = parse_space(
        _space(backbones=["packaged/mobilenetv2_100",
                          {"id": "packaged/mobilenetv2_100", "pretrained": False}])
    )
    labels = [b.label for b in space.backbones]
    assert labels == ["packaged/mobilenetv2_100", "packaged/mobilenetv2_100 (random init)"]
    assert space.backbones[1].to_yaml() == {"id": "packaged/mobilenetv2_100", "pretrained": False}


def test_suggest_samples_distributions_and_fills_fixed_values_and_defaults():
    space = parse_space(
        _space(params={
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [8, 16]},
            "image_size": {"type": "int", "low": 32, "high": 64, "step": 32},
            "label_smoothing": 0.2,
        })
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    spec, params = space.suggest(trial)
    assert spec.id == "packaged/mobilenetv2_100"
    assert set(params) == {n for n, h in HYPERPARAMETERS.items() if h.method is None}
    assert 1e-4 <= params["lr"] <= 1e-2 and params["batch_size"] in (8, 16)
    assert params["image_size"] in (32, 64)
    assert params["label_smoothing"] == 0.2
    assert params["freeze_fraction"] == HYPERPARAMETERS["freeze_fraction"].default
    assert set(trial.params) == {"backbone", "lr", "batch_size", "image_size"}
    assert space.resolve(trial.params) == params


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"params": {"learning_rate": 0.1}}, "params.learning_rate: unknown hyperparameter"),
        ({"params": {"lrr": 0.1}}, "did you mean 'lr'"),
        ({"params": {"lr": {"type": "float", "low": -1, "high": 1}}}, "params.lr.low: must be > 0"),
        ({"params": {"freeze_fraction": 1.5}}, "params.freeze_fraction: must be <= 1"),
        ({"params": {"lr": {"type": "float", "low": 3, "high": 2}}}, "low must be <= high"),
        ({"params": {"lr": {"type": "flot", "low": 1, "high": 2}}}, "params.lr.type: must be"),
        ({"params": {"lr": {"type": "float", "low": 1, "hgh": 2}}},
         "unknown key 'hgh' in params.lr"),
        ({"params": {"augment": "rotate"}}, "params.augment: must be one of"),
        ({"params": {"batch_size": {"type": "categorical", "choices": [16, 0]}}},
         r"params.batch_size.choices\[1\]: must be >= 1"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
        ({"pruner": "sometimes"}, "pruner: unknown pruner 'sometimes'; expected one of"),
        ({"pruner": {"type": "median", "n_startup": 2}},
         "pruner: median: .*unexpected keyword argument 'n_startup'"),
        ({"pruner": {"type": "percentile", "percentile": 150}}, "pruner: percentile: "),
        ({"sampler": "grid"}, "sampler: unknown sampler 'grid'"),
        ({"backbones": []}, "backbones"),
        ({"backbones": [{"id": "x/y", "pretrain": False}]},
         "unknown key 'pretrain' in backbones.0"),
        ({"backbones": ["x/y", "x/y"]}, "listed twice"),
        ({"colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_bad_space_is_one_line_error_naming_the_key(overrides, message):
    with pytest.raises(SpaceError, match=message) as info:
        parse_space(_space(**overrides), "space.yaml")
    assert all(line.startswith("space.yaml: ") for line in str(info.value).splitlines())


def test_missing_key_and_non_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(SpaceError, match="missing key 'epochs'"):
        parse_space({"backbones": ["a/b"]})
    with pytest.raises(SpaceError, match="expected a mapping"):
        parse_space(["a/b"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbones: [a/b\nepochs: 2\n")
    with pytest.raises(SpaceError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_space(bad)
    with pytest.raises(SpaceError, match=r"none\.yaml: no such search-space file"):
        load_space(tmp_path / "none.yaml")


def test_pruner_and_sampler_settings_reach_the_optuna_objects():
    from autotransfer.study.budget.pruners import make_pruner, make_sampler

    space = parse_space(_space(pruner={"type": "median", "n_startup_trials": 7},
                               sampler={"type": "tpe", "n_startup_trials": 3}))
    pruner, sampler = make_pruner(space), make_sampler(space, seed=4)
    assert type(pruner).__name__ == "MedianPruner" and pruner._n_startup_trials == 7
    assert type(sampler).__name__ == "TPESampler" and sampler._n_startup_trials == 3
    default = parse_space(_space())
    assert type(make_pruner(default)).__name__ == "HyperbandPruner"
    assert make_pruner(default)._max_resource == default.epochs
    assert "sampler" not in json.loads(_fingerprint(default))  # old studies keep resuming


def _fingerprint(space):
    from autotransfer.study.checks import _space_fingerprint

    return _space_fingerprint(space)


def test_a_hyperparameter_is_in_the_cache_key_unless_it_says_otherwise():
    from autotransfer.finetune.cache import TRAINING_ONLY
    from autotransfer.space.hyperparameters import Hyperparameter

    assert Hyperparameter(1, "a new knob").affects_features  # safe default: a cache miss
    assert {"image_size", "max_length", "pooling", "clip_seconds", "augment"}.isdisjoint(
        TRAINING_ONLY)
    assert {"lr", "freeze_fraction", "batch_size"} <= TRAINING_ONLY
