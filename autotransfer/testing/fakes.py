"""Fakes for plugin authors' tests: a tiny CNN zoo, a plugin for a block, a fixed pruner."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import optuna
import torch
from torch import nn

from autotransfer.contract.backbone import Backbone, BackboneEntry
from autotransfer.contract.collect import reset_registry
from autotransfer.contract.groups import group_names
from autotransfer.contract.hookspecs import hookimpl
from autotransfer.data import ImagePreprocess


class TinyCNN(nn.Module):
    """A real, tiny CNN (stem, blocks with BatchNorm and dropout, pooled features)."""

    def __init__(self, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Dropout(0.1),
            )
            for _ in range(depth)
        )
        self.norm = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.norm(x).mean((2, 3))


def tiny_cnn_backbone(pretrained: bool = True, width: int = 8, depth: int = 3) -> Backbone:
    """A TinyCNN as a Backbone; ``pretrained`` only changes the seed of its weights."""
    torch.manual_seed(1 if pretrained else 2)
    model = TinyCNN(width, depth)
    matcher = {"stem": r"^stem", "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]}
    return Backbone(
        model=model,
        dim=width,
        groups=group_names([n for n, _ in model.named_parameters()], matcher),
        preprocess=ImagePreprocess(32, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0),
        channels_last=True,
    )


class FakeZoo:
    """A plugin offering ``fake/tiny-cnn`` and ``fake/tiny-cnn-wide`` (tiny real CNNs)."""

    @hookimpl
    def register_backbones(self, register: Callable[[BackboneEntry], None]) -> None:
        register(BackboneEntry("fake/tiny-cnn", "image", loader=tiny_cnn_backbone, params=1_600,
                               description="a tiny CNN for tests"))
        register(BackboneEntry(
            "fake/tiny-cnn-wide", "image",
            loader=lambda pretrained=True: tiny_cnn_backbone(pretrained, width=16),
            description="a wider tiny CNN for tests",
        ))


@contextlib.contextmanager
def registered_plugin(plugin: object, name: str = "fake-zoo") -> Iterator[object]:
    """Register ``plugin`` and rebuild the registry; always unregister afterwards."""
    from autotransfer.contract.manager import load_plugins, pm

    load_plugins()
    pm.register(plugin, name=name)
    reset_registry()
    try:
        yield plugin
    finally:
        pm.unregister(name=name)
        reset_registry()


class DeterministicPruner(optuna.pruners.BasePruner):
    """An Optuna pruner that prunes exactly the trials it is told to, at a given step.

    ``DeterministicPruner({1: 1})`` prunes trial 1 once it has reported step 1; a callable
    ``(trial_number, step) -> bool`` works too. (As ``optuna/testing/pruners.py`` does.)
    """

    def __init__(self, prune_at: dict[int, int] | Callable[[int, int], bool]) -> None:
        self.prune_at = prune_at

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        if callable(self.prune_at):
            return bool(self.prune_at(trial.number, step))
        return trial.number in self.prune_at and step >= self.prune_at[trial.number]
