"""The study's pruner and sampler, built from the search space's ``pruner`` and ``sampler``
(names and settings: :mod:`autotransfer.contract.strategies`)."""

from __future__ import annotations

from autotransfer.contract.space import SearchSpace
from autotransfer.contract.strategies import PRUNERS, SAMPLERS, build

__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler"]


def make_pruner(space: SearchSpace):
    """The pruner named by the space; its resource is the epoch."""
    return build("pruner", space.pruner, epochs=space.epochs)


def make_sampler(space: SearchSpace, seed: int):
    """The sampler named by the space, seeded (each worker adds its number to the seed)."""
    return build("sampler", space.sampler, epochs=space.epochs, seed=seed)
