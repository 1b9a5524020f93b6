"""How many files a new objective touches, measured: one registered from outside the core
(``throughput``, a quantity the cost measurement already records) becomes a second objective of
a search with one entry in the registry; a quantity nobody measures yet needs its measurement in
``finetune/cost.py`` too (docs/architecture.md)."""

import numpy as np
import pytest
import yaml
from PIL import Image

from autotransfer.space.objectives import OBJECTIVES, Objective
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import FakeZoo, registered_plugin


@pytest.fixture
def throughput():
    OBJECTIVES["throughput"] = Objective("throughput", "maximize", "cost", prunable=False,
                                         unit="samples/s")
    yield
    del OBJECTIVES["throughput"]


def test_an_objective_registered_outside_the_core_is_optimised(throughput, tmp_path):
    rng = np.random.default_rng(0)
    for name, level in (("dark", 30), ("light", 220)):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(level, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    space = parse_space({"backbones": ["fake/tiny-cnn"], "epochs": 1,
                         "objectives": ["accuracy", "throughput"],
                         "params": {"lr": 3e-3, "freeze_fraction": 0.0}})
    with registered_plugin(FakeZoo()):
        result = search(tmp_path / "data", space, trials=2, device="cpu",
                        storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out")
    assert [d.name for d in result.study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    for trial in result.study.trials:  # the second value is the measured throughput
        assert trial.values[1] == trial.user_attrs["throughput"] > 0
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["objectives"] == ["accuracy", "throughput"] and best["pareto_front"]
