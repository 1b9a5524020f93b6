"""The backbone contract, registry entries, and the registry built from plugins."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autotransfer.errors import BackboneError, PluginError

if TYPE_CHECKING:
    import torch

MODALITIES = ("image", "text", "audio")


@runtime_checkable
class Preprocess(Protocol):
    """What the training loop asks of ``Backbone.preprocess``, for every modality.

    The loop never looks inside a sample: it configures the preprocess for the trial, encodes
    each split once, selects batches by index (rows of a tensor or of every tensor in a dict),
    and turns each batch into the model's input on the device.

    ``random_in_training`` (optional, default True) tells whether ``to_input(train=True)`` is
    random (augmentation). When it is, the frozen-prefix cache holds a bank of views made by
    ``to_input(train=True)`` with fixed seeds, unless the preprocess declares its views as
    finite: ``training_views`` (an int), ``draw_views(n, generator)`` (the view of each of
    ``n`` samples, drawn with the generator calls that ``to_input`` makes) and
    ``to_view(batch, view, device=...)``; then every view is cached
    (:mod:`autotransfer.cache_views`).

    Implementations: ``ImagePreprocess`` (uint8 images; augment + normalise per batch),
    ``TextPreprocess`` (token ids + attention mask at ``max_length``; cut to the longest text per
    batch), ``AudioPreprocess`` (fixed-length mono clips at the extractor's rate -> features).
    """

    def configure(self, params: dict[str, Any]) -> Preprocess:
        """A copy set up for a trial's hyperparameters (``image_size``, ``max_length``, ...)."""
        ...

    def encode(self, data: Any, split: str) -> tuple[Any, torch.Tensor]:
        """``(inputs, labels)`` of a split: a tensor or dict of tensors with N rows, cached on
        ``data.cache`` so that trials sharing a backbone decode the data once."""
        ...

    def to_input(
        self, batch: Any, *, device: torch.device, train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Any:
        """Rows of ``encode``'s output -> what ``Backbone.model`` takes, on ``device``
        (train-time augmentation when ``train``)."""
        ...


@dataclass
class Backbone:
    """A loaded backbone, ready to fine-tune.

    Attributes:
        model: maps a preprocessed batch (``preprocess.to_input``'s output: a tensor, or a dict
            of tensors such as ``input_ids`` and ``attention_mask``) to pooled features of shape
            ``(B, dim)``.
        dim: feature width ``D``.
        groups: the body as ordered layer groups of parameter names of ``model``, input
            first. Parameters that no group claims form the head and are never frozen.
        preprocess: the :class:`Preprocess` matching its pretraining (``ImagePreprocess``,
            ``TextPreprocess``, ``AudioPreprocess``).
        channels_last: whether the model runs faster with channels-last inputs (CNNs).
        configure: called with a trial's hyperparameters before training, for choices that
            change the model itself (text ``pooling``; Whisper's positions for ``clip_seconds``).
        on_freeze: called with the frozen parameter names (of ``model``) after freezing, for
            models that need more than ``requires_grad_(False)`` (wav2vec2's feature encoder).
        split: optional; ``split(k)`` cuts the body after its first ``k`` groups into
            ``(prefix, rest)``: ``prefix`` an ``nn.Module`` holding only parameters of those
            groups, ``rest`` a callable, with ``rest(prefix(x)) == model(x)``; None when the
            body cannot be cut there. It lets the frozen-prefix cache serve partial freezes
            (a linear probe needs no split). ``autotransfer.cache.sequential_split`` builds one
            from a list of stages.
    """

    model: torch.nn.Module
    dim: int
    groups: list[list[str]]
    preprocess: Any
    channels_last: bool = False
    configure: Callable[[dict[str, Any]], None] | None = None
    on_freeze: Callable[[set[str]], None] | None = None
    split: Callable[[int], tuple[torch.nn.Module, Callable[[Any], Any]] | None] | None = None


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone offered by a plugin.

    Attributes:
        id: ``zoo/name``, e.g. ``timm/resnet18.a1_in1k``.
        modality: one of ``image``, ``text``, ``audio``.
        loader: ``loader(pretrained: bool, **options) -> Backbone``.
        params: parameter count when known without loading.
        description: one line shown by ``autotransfer backbones``.
        options: option names the loader accepts besides ``pretrained``.
    """

    id: str
    modality: str
    loader: Callable[..., Backbone] = field(repr=False, compare=False)
    params: int | None = None
    description: str = ""
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        zoo, _, name = self.id.partition("/")
        if not zoo or not name:
            raise PluginError(f"backbone id must look like 'zoo/name', got {self.id!r}")
        if self.modality not in MODALITIES:
            raise PluginError(
                f"{self.id}: modality must be one of {MODALITIES}, got {self.modality!r}"
            )

    @property
    def zoo(self) -> str:
        return self.id.partition("/")[0]

    def load(self, pretrained: bool = True, **options: Any) -> Backbone:
        """Build the backbone, with pretrained weights unless ``pretrained=False``."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(("pretrained", *self.options))
            raise BackboneError(f"{self.id}: unknown option {unknown[0]!r}; expected {allowed}")
        backbone = self.loader(pretrained=pretrained, **options)
        if not isinstance(backbone, Backbone):
            raise PluginError(
                f"{self.id}: loader returned {type(backbone).__name__}, expected Backbone"
            )
        return backbone


@dataclass(frozen=True)
class BackboneCatalogue:
    """A zoo's backbones, listed only when a caller needs them (a lazy catalogue).

    A zoo registers it from ``register_backbones`` like an entry,
    ``register(BackboneCatalogue("myzoo", ("image",), list_entries))``, so that loading the
    plugin imports no model library and building the registry lists nothing. The registry asks
    it only for ids under ``zoo/`` and lists it only for a listing that needs it (all ids, a
    ``--modality`` among ``modalities``, or ``autotransfer backbones zoo/``).

    Attributes:
        zoo: the catalogue serves the ids ``zoo/<name>`` (its id pattern).
        modalities: the modalities of its entries; a listing of another modality skips it.
        entries: ``entries() -> Iterable[BackboneEntry]``, every id it lists; called at most
            once per registry.
        lookup: optional ``lookup(backbone_id) -> BackboneEntry | None``: one id without
            listing the rest; None searches ``entries()``.
    """

    zoo: str
    modalities: tuple[str, ...]
    entries: Callable[[], Iterable[BackboneEntry]] = field(repr=False, compare=False)
    lookup: Callable[[str], BackboneEntry | None] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.zoo or "/" in self.zoo:
            raise PluginError(f"a catalogue's zoo is the id prefix before '/', got {self.zoo!r}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if not self.modalities or unknown:
            raise PluginError(f"catalogue {self.zoo!r}: modalities must be some of {MODALITIES}, "
                              f"got {self.modalities!r}")


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
                from autotransfer.plugins import report_plugin_error

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
        zoo = backbone_id.partition("/")[0]
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
        zoo, _, name = backbone_id.partition("/")
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


_registry: Registry | None = None


def get_registry() -> Registry:
    """The registry of every backbone that the loaded plugins offer (built on first use)."""
    global _registry
    if _registry is None:
        from autotransfer.plugins import PerPlugin, call_hook_per_plugin, pm

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


def get_backbone(backbone_id: str) -> BackboneEntry:
    """Shortcut for ``get_registry().get(backbone_id)``."""
    return get_registry().get(backbone_id)
