"""The backbone registry: every registered id, filled from the plugins' hooks on first use."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable

from autotransfer.contract.backbone import BackboneCatalogue, BackboneEntry, split_id
from autotransfer.errors import BackboneError, PluginError


class Registry:
    """All registered backbones by id; built once from the loaded plugins.

    Entries registered one by one are known at once; a :class:`BackboneCatalogue` is listed
    the first time a lookup or a listing needs its zoo. The first registration of an id wins,
    in the order the plugins registered (a catalogue counts where it was registered).
    """

    def __init__(self, resolver: Callable[[str], BackboneEntry | None] | None = None) -> None:
        self._entries: dict[str, BackboneEntry] = {}
        self._catalogues: list[tuple[BackboneCatalogue, str]] = []
        self._listed: set[int] = set()  # indices of catalogues listed so far
        self.plugin_of: dict[str, str] = {}
        self.duplicates: list[str] = []
        self.resolver = resolver

    def register(self, entry: BackboneEntry | BackboneCatalogue, plugin: str = "?") -> None:
        """Add ``entry`` (or a lazy catalogue); an id registered again is reported and the
        first one is kept."""
        if isinstance(entry, BackboneCatalogue):
            self._catalogues.append((entry, plugin))
            return
        if not isinstance(entry, BackboneEntry):
            raise PluginError(f"register() takes a BackboneEntry or a BackboneCatalogue, got "
                              f"{type(entry).__name__}")
        self._list(entry.zoo)  # a catalogue registered earlier keeps its ids
        self._add(entry, plugin)

    def _add(self, entry: BackboneEntry, plugin: str) -> None:
        if self.plugin_of.get(entry.id) == plugin:  # listed after a lookup found it
            return
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

    def _list(self, zoo: str | None = None, modality: str | None = None) -> None:
        """List the catalogues of ``zoo`` (None: every zoo) that may hold ``modality``."""
        for index, (catalogue, plugin) in enumerate(self._catalogues):
            if index in self._listed or zoo not in (None, catalogue.zoo):
                continue
            if modality is not None and modality not in catalogue.modalities:
                continue
            self._listed.add(index)
            try:
                for entry in catalogue.entries():
                    self._add(_checked(entry, catalogue), plugin)
            except Exception as exc:  # a broken zoo must not take the others down
                from autotransfer.contract.manager import report_plugin_error

                report_plugin_error(plugin, f"failed listing zoo {catalogue.zoo!r}: "
                                            f"{type(exc).__name__}: {exc}")

    def catalogues(self, zoo: str | None = None) -> list[BackboneCatalogue]:
        """The lazy catalogues registered for ``zoo`` (None: all), in registration order."""
        return [c for c, _ in self._catalogues if zoo in (None, c.zoo)]

    @property
    def listed(self) -> list[str]:
        """The zoos whose catalogues have been listed so far."""
        return sorted({self._catalogues[i][0].zoo for i in self._listed})

    def zoos(self) -> list[str]:
        """The zoos known without listing any catalogue."""
        listed = {e.zoo for e in self._entries.values()}
        return sorted(listed | {c.zoo for c, _ in self._catalogues})

    def __contains__(self, backbone_id: str) -> bool:
        if backbone_id in self._entries:
            return True
        try:
            self.get(backbone_id)
        except BackboneError:
            return False
        return True

    def __len__(self) -> int:
        self._list()
        return len(self._entries)

    def entries(self, modality: str | None = None, zoo: str | None = None) -> list[BackboneEntry]:
        """The listed entries of ``modality`` and ``zoo`` (None: all); lists only the
        catalogues that can hold them."""
        self._list(zoo, modality)
        return [e for e in self._entries.values()
                if modality in (None, e.modality) and zoo in (None, e.zoo)]

    def get(self, backbone_id: str) -> BackboneEntry:
        """The entry for ``backbone_id``; an unknown id suggests the closest known ones.

        Only the catalogues of the id's zoo are asked. Ids that no plugin registered are
        offered to the zoos' ``resolve_backbone`` hooks (``hf-text/<hub id or local
        directory>``), and kept once resolved.

        Raises:
            BackboneError: no zoo serves the id (with the closest ids of its zoo).
            PluginError: a zoo returned something other than a BackboneEntry.
        """
        if backbone_id in self._entries:
            return self._entries[backbone_id]
        zoo = split_id(backbone_id)[0]
        for index, (catalogue, plugin) in enumerate(self._catalogues):
            if catalogue.zoo == zoo and index not in self._listed and catalogue.lookup:
                found = catalogue.lookup(backbone_id)
                if found is not None:
                    self._add(_checked(found, catalogue), plugin)
                    return self._entries[backbone_id]
        self._list(zoo)
        if backbone_id in self._entries:
            return self._entries[backbone_id]
        resolved = self.resolver(backbone_id) if self.resolver is not None else None
        if resolved is not None:
            if not isinstance(resolved, BackboneEntry):
                raise PluginError(
                    f"resolve_backbone({backbone_id!r}) returned {type(resolved).__name__}, "
                    "expected a BackboneEntry or None"
                )
            self._entries[backbone_id] = resolved
            return resolved
        raise BackboneError(f"unknown backbone {backbone_id!r}; {self._hint(backbone_id)}"
                            "run 'autotransfer backbones' to list the available ids") from None

    def _hint(self, backbone_id: str) -> str:
        zoo, name = split_id(backbone_id)
        zoos = self.zoos()
        if zoo in zoos or not zoos:
            close = difflib.get_close_matches(backbone_id, list(self._entries), n=3, cutoff=0.6)
            return f"did you mean {', '.join(close)}? " if close else ""
        close = difflib.get_close_matches(zoo, zoos, n=1)
        known = f"no zoo is called {zoo!r} (zoos: {', '.join(zoos)})"
        return f"{known}; did you mean {close[0]}/{name}? " if close else f"{known}; "


def _checked(entry: object, catalogue: BackboneCatalogue) -> BackboneEntry:
    if not isinstance(entry, BackboneEntry):
        raise PluginError(f"catalogue {catalogue.zoo!r} gave {type(entry).__name__}, "
                          "expected a BackboneEntry")
    if entry.zoo != catalogue.zoo or entry.modality not in catalogue.modalities:
        raise PluginError(f"catalogue {catalogue.zoo!r} ({', '.join(catalogue.modalities)}) "
                          f"gave {entry.id!r} ({entry.modality})")
    return entry
