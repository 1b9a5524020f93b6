"""Pruners and samplers from factories (autotransfer.space.strategies): an Optuna class by name
as before, a factory by import path, and a pruner a plugin offers through the
``register_strategies`` hook, named in a space like Optuna's own and used by a real search.

The plugin here is this file's ``EveryOtherPruner`` and ``SchedulerPlugin``: nothing in the
core names it."""

import optuna
import pytest

from autotransfer.contract.collect import get_strategies
from autotransfer.errors import PluginError, SpaceError
from autotransfer.finetune.records import trial_records
from autotransfer.plugin import Strategy, hookimpl
from autotransfer.space.schema import parse_space
from autotransfer.space.strategies import build
from autotransfer.study.study import search
from autotransfer.testing import DeterministicPruner, FakeZoo, registered_plugin


class EveryOtherPruner(optuna.pruners.BasePruner):
    """Prunes the odd-numbered trials once they reported epoch ``at_epoch``."""

    def __init__(self, at_epoch: int = 1) -> None:
        self.at_epoch = at_epoch

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        return trial.number % 2 == 1 and step is not None and step >= self.at_epoch


class SchedulerPlugin:
    @hookimpl
    def register_strategies(self, register):
        register(Strategy("pruner", "every_other", EveryOtherPruner,
                          lambda epochs: {"at_epoch": max(1, epochs - 1)},
                          "prunes every other trial before its last epoch"))


@pytest.fixture
def scheduler():
    with registered_plugin(FakeZoo()), registered_plugin(SchedulerPlugin(), "scheduler"):
        yield


def _space(**changes):
    return parse_space({"backbones": ["fake/tiny-cnn"], "epochs": 2,
                        "params": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2},
                                   "freeze_fraction": 0.0, "batch_size": 8}, **changes})


@pytest.mark.filterwarnings("ignore:every finished trial scored at chance level")
def test_a_plugins_pruner_is_named_in_a_space_and_prunes_a_real_search(scheduler, class_folders,
                                                                       tmp_path):
    assert list(get_strategies()["pruner"]) == ["every_other"]
    space = _space(pruner="every_other")
    assert isinstance(build("pruner", space.pruner, epochs=2), EveryOtherPruner)
    result = search(class_folders, space, trials=2, device="cpu", references=False,
                    storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out")
    records = trial_records(result.study)
    assert [r.state for r in records] == ["complete", "pruned"]
    # the reason and the rule that gave it are on the trial
    assert records[1].rule == "pruner"
    assert records[1].prune_reason.startswith("pruned after epoch 1/2")
    assert records[0].rule is None


def test_without_the_plugin_its_name_is_unknown_and_the_error_lists_the_known_ones():
    with pytest.raises(SpaceError, match="pruner: unknown pruner 'every_other'; expected one of "
                                         "hyperband, median"):
        _space(pruner="every_other")


def test_a_factory_by_import_path_is_called_with_the_spaces_settings():
    space = _space(pruner={"factory": "optuna.pruners:MedianPruner", "n_startup_trials": 7},
                   sampler={"factory": "optuna.samplers:RandomSampler"})
    pruner = build("pruner", space.pruner, epochs=2)
    assert isinstance(pruner, optuna.pruners.MedianPruner) and pruner._n_startup_trials == 7
    # the search's seed reaches a sampler factory that takes one
    a, b = (build("sampler", space.sampler, epochs=2, seed=3) for _ in range(2))
    assert a._rng.rng.random() == b._rng.rng.random()


def test_a_sampler_factory_without_a_seed_is_called_without_one():
    def make():  # no seed argument
        return optuna.samplers.RandomSampler(0)

    strategy = Strategy("sampler", "fixed", make)
    with registered_plugin(type("P", (), {"register_strategies": hookimpl(
            lambda self, register: register(strategy))})(), "fixed-sampler"):
        assert isinstance(build("sampler", "fixed", epochs=1, seed=5),
                          optuna.samplers.RandomSampler)


@pytest.mark.parametrize(("pruner", "message"), [
    ({"factory": "no_such_module:make"}, "pruner: cannot import the factory "
                                         "'no_such_module:make': No module named"),
    ({"factory": "optuna.samplers:RandomSampler"}, "pruner: optuna.samplers:RandomSampler: the "
                                                    "factory returned a RandomSampler, not an "
                                                    "optuna.pruners.BasePruner"),
    ({"type": "median", "factory": "optuna.pruners:MedianPruner"}, "pruner: "),
    ({"factory": "optuna.pruners:MedianPruner", "warmup": 1}, "unexpected keyword argument "
                                                              "'warmup'"),
])
def test_a_bad_factory_is_one_line_naming_the_key(pruner, message):
    with pytest.raises(SpaceError, match=message):
        _space(pruner=pruner)


def test_a_strategy_is_checked_when_made():
    with pytest.raises(PluginError, match="kind must be one of pruner, sampler, got 'scheduler'"):
        Strategy("scheduler", "x", EveryOtherPruner)
    with pytest.raises(PluginError, match="pruner 'x': factory must be"):
        Strategy("pruner", "x", 3)


def test_a_plugin_does_not_replace_a_builtin_name():
    class Shadow:
        @hookimpl
        def register_strategies(self, register):
            register(Strategy("pruner", "median", EveryOtherPruner))

    with registered_plugin(Shadow(), "shadow"):
        assert isinstance(build("pruner", "median", epochs=2), optuna.pruners.MedianPruner)


def test_deterministic_pruner_prunes_exactly_the_trials_it_is_told():
    # autotransfer.testing's pruner fake (optuna's DeterministicPruner idea), for plugin tests
    study = optuna.create_study(pruner=DeterministicPruner({1: 2}))

    def objective(trial):
        for step in range(1, 4):
            trial.report(float(step), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 1.0

    study.optimize(objective, n_trials=3)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert max(study.trials[1].intermediate_values) == 2
