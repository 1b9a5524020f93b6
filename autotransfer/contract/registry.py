"""The backbone registry: every registered id, filled from the plugins' hooks on first use."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from functools import partial

from autotransfer.contract.backbone import BackboneEntry
from autotransfer.errors import BackboneError, PluginError


class Registry:
    """All registered backbones by id; built once from the loaded plugins."""

    def __init__(self, resolver: Callable[[str], BackboneEntry | None] | None = None) -> None:
        self._entries: dict[str, BackboneEntry] = {}
        self.plugin_of: dict[str, str] = {}
        self.duplicates: list[str] = []
        self.resolver = resolver

    def register(self, entry: BackboneEntry, plugin: str = "?") -> None:
        """Add ``entry``; an id registered again is reported and the first one is kept."""
        if not isinstance(entry, BackboneEntry):
            raise PluginError(f"register() takes a BackboneEntry, got {type(entry).__name__}")
        if entry.id in self._entries:
            self.duplicates.append(entry.id)
            print(
                f"autotransfer: plugin {plugin!r} registers backbone {entry.id!r}, which plugin "
                f"{self.plugin_of[entry.id]!r} already registered; the first one is kept",
                file=sys.stderr,
            )
            return
        self._entries[entry.id] = entry
        self.plugin_of[entry.id] = plugin

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, modality: str | None = None) -> list[BackboneEntry]:
        """The registered entries (of ``modality``), in registration order."""
        return [e for e in self._entries.values() if modality in (None, e.modality)]

    def get(self, backbone_id: str) -> BackboneEntry:
        """The entry for ``backbone_id``; an unknown id suggests the closest known ones.

        Ids that no plugin registered are offered to the zoos' ``resolve_backbone`` hooks
        (``hf-text/<hub id or local directory>``), and kept once resolved.

        Raises:
            BackboneError: no plugin registers or resolves ``backbone_id``.
            PluginError: a ``resolve_backbone`` hook returned something else than an entry.
        """
        try:
            return self._entries[backbone_id]
        except KeyError:
            pass
        resolved = self.resolver(backbone_id) if self.resolver is not None else None
        if resolved is not None:
            if not isinstance(resolved, BackboneEntry):
                raise PluginError(
                    f"resolve_backbone({backbone_id!r}) returned {type(resolved).__name__}, "
                    "expected a BackboneEntry or None"
                )
            self._entries[backbone_id] = resolved
            return resolved
        close = difflib.get_close_matches(backbone_id, list(self._entries), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise BackboneError(
            f"unknown backbone {backbone_id!r}; {hint}"
            "run 'autotransfer backbones' to list the available ids"
        ) from None


_registry: Registry | None = None


def get_registry() -> Registry:
    """The registry of every backbone that the loaded plugins offer (built on first use)."""
    global _registry
    if _registry is None:
        from autotransfer.contract.manager import PerPlugin, call_hook_per_plugin, pm

        registry = Registry(lambda backbone_id: pm.hook.resolve_backbone(backbone_id=backbone_id))
        call_hook_per_plugin(
            "register_backbones",
            register=PerPlugin(lambda plugin: partial(registry.register, plugin=plugin)),
        )
        _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the registry so that it is rebuilt (after registering or removing a plugin)."""
    global _registry
    _registry = None
    from autotransfer.contract.formats import reset_formats

    reset_formats()


def get_backbone(backbone_id: str) -> BackboneEntry:
    """Shortcut for ``get_registry().get(backbone_id)``."""
    return get_registry().get(backbone_id)
