"""How many files a new objective touches, measured: a validation metric and a measured cost,
each registered from outside the core through the plugin API (``register_objective``), are
optimised, bounded, recorded, listed in the leaderboard and ``best.yaml`` and drawn in the
front plot with no other change (docs/architecture.md)."""

import csv

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.metrics import cohen_kappa_score

from autotransfer.plugin import Objective, register_objective
from autotransfer.space.objectives import get_objective, unregister_objective
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import FakeZoo, registered_plugin


def _trainable(model) -> float:
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


@pytest.fixture
def outside():
    register_objective(Objective("cohen_kappa", "maximize", "score", prunable=True,
                                 compute=cohen_kappa_score))
    register_objective(Objective("trainable", "minimize", "cost", unit="parameters",
                                 compute=_trainable, fmt=","))
    yield
    unregister_objective("cohen_kappa")
    unregister_objective("trainable")


def _images(root):
    rng = np.random.default_rng(0)
    for name, level in (("dark", 30), ("light", 220)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_a_metric_and_a_cost_registered_outside_the_core_show_everywhere(outside, tmp_path):
    space = parse_space({"backbones": ["fake/tiny-cnn"], "epochs": 1,
                         "objectives": ["cohen_kappa", "trainable"],
                         "constraints": {"trainable": 1e9},
                         "params": {"lr": 3e-3, "freeze_fraction": {"type": "float",
                                                                   "low": 0.0, "high": 1.0}}})
    assert space.metric == "cohen_kappa"
    with registered_plugin(FakeZoo()):
        result = search(_images(tmp_path / "data"), space, trials=3, device="cpu",
                        storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out")
    assert [d.name for d in result.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for trial in result.study.trials:  # the values: the metric, then the measured cost
        assert trial.values[1] == trial.user_attrs["trainable"] > 0
        assert "cohen_kappa" in trial.user_attrs["epoch_1"]
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["schema"] == 2 and best["metric"] == "cohen_kappa"
    assert best["objectives"] == ["cohen_kappa", "trainable"] and best["trainable"] > 0
    assert "cohen_kappa" in best["scores"]["val"]
    assert all("trainable" in member for member in best["pareto_front"])
    with (tmp_path / "out" / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(r["trainable"]) > 0 for r in rows)
    assert (tmp_path / "out" / "pareto_front.png").is_file()
    assert (tmp_path / "out" / "report.md").is_file()  # an interval the metric cannot give


def test_balanced_accuracy_and_peak_memory_are_one_entry_each(tmp_path):
    assert get_objective("balanced_accuracy").measure == "score"
    assert get_objective("peak_memory_mb").measure == "cost"
    space = parse_space({"backbones": ["fake/tiny-cnn"], "epochs": 1,
                         "metric": "balanced_accuracy",
                         "objectives": ["balanced_accuracy", "peak_memory_mb"],
                         "constraints": {"peak_memory_mb": 1e7, "throughput": 1e-3},
                         "params": {"lr": 3e-3, "freeze_fraction": 0.0}})
    with registered_plugin(FakeZoo()):
        result = search(_images(tmp_path / "data"), space, trials=2, device="cpu",
                        storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out")
    trial = result.study.trials[0]
    assert trial.values[1] == trial.user_attrs["peak_memory_mb"] > 0
    # a maximised cost's bound is a lower bound: far below the throughput, feasible
    assert trial.user_attrs["constraint_violations"]["throughput"] < 0
    assert 0.0 <= trial.user_attrs["epoch_1"]["balanced_accuracy"] <= 1.0
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["peak_memory_mb"] > 0 and best["val_score_ci95"]  # a bootstrap interval
    assert best["scores"]["val"]["balanced_accuracy"] == pytest.approx(best["val_score"],
                                                                       abs=1e-5)


def test_an_unknown_metric_is_one_line_naming_the_known_ones():
    from autotransfer.errors import SpaceError

    with pytest.raises(SpaceError, match="metric: unknown metric 'auroc'.*balanced_accuracy"):
        parse_space({"backbones": ["fake/tiny-cnn"], "epochs": 1, "metric": "auroc"})


#: a plugin that adds a validation metric and a measured cost: the whole of it (no core file;
#: a space then names them, from the CLI and in every spawned worker)
OBJECTIVES_PLUGIN = '''
from sklearn.metrics import cohen_kappa_score

from autotransfer.plugin import Objective, hookimpl


def _trainable(model):
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


class Kappa:
    @hookimpl
    def register_objectives(self, register):
        register(Objective("cohen_kappa", "maximize", "score", prunable=True,
                           compute=cohen_kappa_score))
        register(Objective("trainable", "minimize", "cost", unit="parameters",
                           compute=_trainable, fmt=","))


plugin = Kappa()
'''

SPACE_OBJECTIVES = """
backbones: [{id: timm/test_vit, pretrained: false}]
epochs: 1
objectives: [cohen_kappa, trainable]
params:
  image_size: 32
  lr: 3.0e-3
"""


def _check_objective_trials(trials):
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:  # the plugin's metric is the first value, its cost the second
        assert trial.values[0] == pytest.approx(trial.user_attrs["epoch_1"]["cohen_kappa"],
                                                abs=1e-5)
        assert trial.values[1] == trial.user_attrs["trainable"] > 0


def test_a_plugins_objectives_are_named_in_a_space_and_searched_from_the_cli(fashion_mnist,
                                                                              tmp_path):
    import types

    import optuna

    from autotransfer.cli import main

    module = types.ModuleType("kappa_plugin")
    exec(OBJECTIVES_PLUGIN, module.__dict__)
    (tmp_path / "space.yaml").write_text(SPACE_OBJECTIVES)
    storage = f"sqlite:///{tmp_path}/s.db"
    with registered_plugin(module.plugin, "kappa"):
        main(["search", str(fashion_mnist), "--space", str(tmp_path / "space.yaml"),
              "--trials", "2", "--storage", storage, "--study", "k", "--out",
              str(tmp_path / "out"), "--device", "cpu", "--no-references"])
    _check_objective_trials(optuna.load_study(study_name="k", storage=storage).trials)
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["metric"] == "cohen_kappa" and best["trainable"] > 0
    from autotransfer.errors import SpaceError

    with pytest.raises(SpaceError, match="unknown metric 'cohen_kappa'"):  # the plugin is gone
        parse_space({"backbones": ["timm/test_vit"], "epochs": 1, "metric": "cohen_kappa"})
