"""The plugin contract: the hooks a zoo implements (pluggy project name ``autotransfer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from autotransfer.contract.backbone import BackboneEntry
    from autotransfer.contract.formats import ModelFormat
    from autotransfer.contract.modalities import Modality
    from autotransfer.contract.ranking import RankingEntry
    from autotransfer.contract.recipes import Recipe
    from autotransfer.contract.strategies import Strategy

hookspec = pluggy.HookspecMarker("autotransfer")
hookimpl = pluggy.HookimplMarker("autotransfer")


@hookspec
def register_backbones(register: Callable[[BackboneEntry], None]) -> None:
    """Offer backbones by calling ``register(BackboneEntry(...))`` once for each."""


@hookspec(firstresult=True)
def resolve_backbone(backbone_id: str) -> BackboneEntry | None:
    """Return an entry for an id this zoo serves without listing it (a hub id, a local
    directory), or None; asked only for ids that no plugin registered."""


@hookspec
def register_model_formats(register: Callable[[ModelFormat], None]) -> None:
    """Offer native model formats (save a fine-tuned model in a library's own layout, load it
    back) by calling ``register(ModelFormat(...))`` once for each."""


@hookspec
def register_modalities(register: Callable[[Modality], None]) -> None:
    """Offer kinds of input (a reader, its file suffixes, a per-file check) by calling
    ``register(Modality(...))`` once for each; the builtin image, audio and text come the same
    way (:mod:`autotransfer.data.modality`). The first registration of a name wins."""


@hookspec
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Offer pruners and samplers that a search space names like Optuna's own
    (``pruner: <name>``) by calling ``register(Strategy(...))`` once for each. A name the core
    or an earlier plugin already uses is not replaced."""


@hookspec
def register_methods(register: Callable[[object], None]) -> None:
    """Offer tuning methods (what trains in the unfrozen layer groups) by calling
    ``register(TuningMethod(...))`` once for each
    (:class:`autotransfer.finetune.methods.TuningMethod`: its name, hyperparameters, whether it
    gets a reference trial, how it costs). A search space may then name it in ``method``, from
    the CLI and in every worker. A builtin name, or the first registration of a name, wins."""


@hookspec
def register_objectives(register: Callable[[object], None]) -> None:
    """Offer validation metrics and measured costs by calling ``register(Objective(...))`` once
    for each (:class:`autotransfer.space.objectives.Objective`: its name, direction, and how it
    is obtained). A search space may then name it (``metric``, ``objectives``,
    ``constraints``), from the CLI and in every worker. A builtin name, or the first
    registration of a name, wins."""


@hookspec
def register_recipes(register: Callable[[Recipe], None]) -> None:
    """Offer training recipes (what a training step is: its batch streams, its loss, its
    epoch-end steps) that a search space names (``recipe: <name>``) by calling
    ``register(Recipe(...))`` once for each; the search, every worker and ``train`` build it.
    The builtin ``supervised``, or the first registration of a name, wins."""


@hookspec
def register_ranking(register: Callable[[RankingEntry], None], modality: str,
                     online: bool) -> None:
    """Offer ranking metadata of this zoo's ``modality`` candidates (published accuracy,
    parameters, throughput, licence) by calling ``register(RankingEntry(...))`` once for each;
    read current tables only when ``online`` is True, else a shipped snapshot."""
