"""The collectors: what the loaded plugins offer, gathered through their hooks on first use.

The type modules (``backbone``, ``registry``, ``formats``) know nothing of plugins; this module
calls the hooks (``contract.manager``) and keeps what they registered until ``reset_registry``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from autotransfer.contract.backbone import BackboneCatalogue, BackboneEntry
from autotransfer.contract.formats import ModelFormat
from autotransfer.contract.manager import PerPlugin, call_hook_per_plugin, pm
from autotransfer.contract.modalities import Modality
from autotransfer.contract.ranking import RankingEntry
from autotransfer.contract.recipes import Recipe
from autotransfer.contract.registry import Registry
from autotransfer.contract.strategies import KINDS, Strategy
from autotransfer.errors import DataError, HubUnreachable, PluginError

_Found = TypeVar("_Found")

_registry: Registry | None = None
_formats: list[ModelFormat] | None = None
_modalities: dict[str, Modality] | None = None
_strategies: dict[str, dict[str, Strategy]] | None = None
_methods: dict[str, Any] | None = None
_recipes: dict[str, Recipe] | None = None
_objectives: dict[str, Any] | None = None
#: called by :func:`reset_registry`: a layer above that copied what plugins offered forgets it
#: (``space.methods`` forgets the plugins' method names and hyperparameters)
_on_reset: list[Callable[[], None]] = []


def on_reset(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever the collected plugin offers are forgotten."""
    _on_reset.append(callback)


def get_registry() -> Registry:
    """The registry of every backbone that the loaded plugins offer (built on first use)."""
    global _registry
    if _registry is None:
        registry = Registry(lambda backbone_id: pm.hook.resolve_backbone(backbone_id=backbone_id))
        call_hook_per_plugin(
            "register_backbones",
            register=PerPlugin(lambda plugin: partial(_register_backbone, registry,
                                                      plugin=plugin)),
        )
        _registry = registry
    return _registry


def _register_backbone(registry: Registry, entry: BackboneEntry | BackboneCatalogue,
                       plugin: str = "?") -> None:
    """``registry.register``, once the entry's (or catalogue's) modalities are registered."""
    named = (entry.modalities if isinstance(entry, BackboneCatalogue)
             else (entry.modality,) if isinstance(entry, BackboneEntry) else ())
    known = get_modalities()
    unknown = [m for m in named if m not in known]
    if unknown:
        what = f"catalogue {entry.zoo!r}" if isinstance(entry, BackboneCatalogue) else entry.id
        raise PluginError(f"{what}: modality must be one of {', '.join(known)} (the registered "
                          f"modalities), got {unknown[0]!r}")
    registry.register(entry, plugin=plugin)


def reset_registry() -> None:
    """Forget the backbones, formats, modalities, strategies, methods, recipes and objectives so
    that they are collected again (after registering or removing a plugin)."""
    global _registry, _modalities, _strategies, _methods, _recipes, _objectives
    _registry = None
    _modalities = None
    _strategies = None
    _methods = None
    _recipes = None
    _objectives = None
    reset_formats()
    for callback in _on_reset:
        callback()


def _register_modality(found: dict[str, Modality], modality: Modality, plugin: str = "?") -> None:
    if not isinstance(modality, Modality):
        raise PluginError(f"plugin {plugin!r}: register() takes a Modality, got "
                          f"{type(modality).__name__}")
    found.setdefault(modality.name, modality)  # the first registration wins


def _collect(hook: str, found: _Found, register_one: Callable[..., None]) -> _Found:
    """``found`` once every plugin's ``hook`` has added to it through
    ``register_one(found, item, plugin=name)`` (so that a bad item names its plugin)."""
    call_hook_per_plugin(
        hook, register=PerPlugin(lambda plugin: partial(register_one, found, plugin=plugin)))
    return found


def get_modalities() -> dict[str, Modality]:
    """Every modality the loaded plugins offer by name, builtins first (built on first use)."""
    global _modalities
    if _modalities is None:
        found: dict[str, Modality] = {}
        _modalities = _collect("register_modalities", found, _register_modality)
    return _modalities


def get_modality(name: str) -> Modality:
    """The registered modality ``name``.

    Raises:
        DataError: unknown name (lists the registered ones).
    """
    known = get_modalities()
    if name not in known:
        raise DataError(f"modality must be one of {', '.join(known)}, got {name!r}")
    return known[name]


def _register_method(found: dict[str, Any], method: Any, plugin: str = "?") -> None:
    name = getattr(method, "name", None)
    if not (isinstance(name, str) and name.isidentifier() and callable(getattr(method, "apply",
                                                                                None))):
        raise PluginError(f"plugin {plugin!r}: register() takes a TuningMethod (a name that is "
                          f"an identifier and an apply), got {type(method).__name__}")
    found.setdefault(name, method)  # the first registration wins


def get_methods() -> dict[str, Any]:
    """Every tuning method the loaded plugins offer through ``register_methods``, by name
    (``autotransfer.finetune.methods.TuningMethod`` objects; built on first use)."""
    global _methods
    if _methods is None:
        found: dict[str, Any] = {}
        _methods = _collect("register_methods", found, _register_method)
    return _methods


def _register_objective(found: dict[str, Any], objective: Any, plugin: str = "?") -> None:
    name = getattr(objective, "name", None)
    if not (isinstance(name, str) and name
            and getattr(objective, "measure", None) in ("score", "cost")):
        raise PluginError(f"plugin {plugin!r}: register() takes an Objective (a name and a "
                          f"measure, score or cost), got {type(objective).__name__}")
    found.setdefault(name, objective)  # the first registration wins


def get_objectives() -> dict[str, Any]:
    """Every metric and cost the loaded plugins offer through ``register_objectives``, by name
    (``autotransfer.space.objectives.Objective`` objects; built on first use)."""
    global _objectives
    if _objectives is None:
        found: dict[str, Any] = {}
        _objectives = _collect("register_objectives", found, _register_objective)
    return _objectives


def get_backbone(backbone_id: str) -> BackboneEntry:
    """Shortcut for ``get_registry().get(backbone_id)``."""
    return get_registry().get(backbone_id)


def _register_format(found: list[ModelFormat], fmt: ModelFormat, plugin: str = "?") -> None:
    if not isinstance(fmt, ModelFormat):
        raise PluginError(f"plugin {plugin!r}: register() takes a ModelFormat, got "
                          f"{type(fmt).__name__}")
    found.append(fmt)


def get_formats() -> list[ModelFormat]:
    """Every format the loaded plugins offer, in plugin order (built on first use)."""
    global _formats
    if _formats is None:
        found: list[ModelFormat] = []
        _formats = _collect("register_model_formats", found, _register_format)
    return _formats


def reset_formats() -> None:
    """Forget the formats so that they are collected again (after a plugin change)."""
    global _formats
    _formats = None


def format_for_export(body: Any, modality: str) -> ModelFormat | None:
    """The first format that saves ``body`` (None when no plugin offers one)."""
    return next((f for f in get_formats()
                 if f.modality in (None, modality) and f.can_export(body, modality)), None)


def format_for_load(library: str, modality: str) -> ModelFormat | None:
    """The format named ``library`` that serves ``modality`` (None when none is loaded)."""
    return next((f for f in get_formats()
                 if f.library == library and f.modality in (None, modality)), None)


def _register_strategy(found: dict[str, dict[str, Strategy]], strategy: Strategy,
                       plugin: str = "?") -> None:
    if not isinstance(strategy, Strategy):
        raise PluginError(f"plugin {plugin!r}: register() takes a Strategy, got "
                          f"{type(strategy).__name__}")
    found[strategy.kind].setdefault(strategy.name, strategy)  # the first registration wins


def get_strategies() -> dict[str, dict[str, Strategy]]:
    """The pruners and samplers the loaded plugins offer: ``{"pruner": {name: Strategy},
    "sampler": {...}}``, in plugin order (built on first use). The builtins are
    :mod:`autotransfer.space.strategies`'s own."""
    global _strategies
    if _strategies is None:
        found: dict[str, dict[str, Strategy]] = {kind: {} for kind in KINDS}
        _strategies = _collect("register_strategies", found, _register_strategy)
    return _strategies


def _register_recipe(found: dict[str, Recipe], recipe: Recipe, plugin: str = "?") -> None:
    if not isinstance(recipe, Recipe):
        raise PluginError(f"plugin {plugin!r}: register() takes a Recipe, got "
                          f"{type(recipe).__name__}")
    found.setdefault(recipe.name, recipe)  # the first registration wins


def get_recipes() -> dict[str, Recipe]:
    """The training recipes the loaded plugins offer through ``register_recipes``, by name, in
    plugin order (built on first use). The builtin ``supervised`` is
    :mod:`autotransfer.finetune.recipe`'s own."""
    global _recipes
    if _recipes is None:
        found: dict[str, Recipe] = {}
        _recipes = _collect("register_recipes", found, _register_recipe)
    return _recipes


def _register_ranking(found: list[RankingEntry], modality: str, entry: RankingEntry,
                      plugin: str = "?") -> None:
    if not isinstance(entry, RankingEntry):
        raise PluginError(f"plugin {plugin!r}: register() takes a RankingEntry, got "
                          f"{type(entry).__name__}")
    if entry.modality == modality:
        found.append(entry)


def get_ranking_entries(modality: str, *, online: bool = False) -> list[RankingEntry]:
    """Every plugin's ranking metadata for ``modality`` (``register_ranking``), not cached:
    ``online`` asks the zoos for their current tables and the Hub's metadata.

    Raises:
        HubUnreachable: ``online`` and the Hugging Face Hub did not answer (one line).
    """
    found: list[RankingEntry] = []
    call_hook_per_plugin(
        "register_ranking", passthrough=(HubUnreachable,), modality=modality, online=online,
        register=PerPlugin(lambda plugin: partial(_register_ranking, found, modality,
                                                  plugin=plugin)),
    )
    return found
