"""The collectors: what the loaded plugins offer, gathered through their hooks on first use.

The type modules (``backbone``, ``registry``, ``formats``) know nothing of plugins; this module
calls the hooks (``contract.manager``) and keeps what they registered until ``reset_registry``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.formats import ModelFormat
from autotransfer.contract.manager import PerPlugin, call_hook_per_plugin, pm
from autotransfer.contract.registry import Registry
from autotransfer.errors import PluginError

_registry: Registry | None = None
_formats: list[ModelFormat] | None = None


def get_registry() -> Registry:
    """The registry of every backbone that the loaded plugins offer (built on first use)."""
    global _registry
    if _registry is None:
        registry = Registry(lambda backbone_id: pm.hook.resolve_backbone(backbone_id=backbone_id))
        call_hook_per_plugin(
            "register_backbones",
            register=PerPlugin(lambda plugin: partial(registry.register, plugin=plugin)),
        )
        _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the backbones and formats so that they are collected again (after registering or
    removing a plugin)."""
    global _registry
    _registry = None
    reset_formats()


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
        call_hook_per_plugin(
            "register_model_formats",
            register=PerPlugin(lambda plugin: partial(_register_format, found, plugin=plugin)),
        )
        _formats = found
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
