"""The backbone contract, registry entries, and the registry built from plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autotransfer.errors import BackboneError, PluginError

if TYPE_CHECKING:
    import torch


def split_id(backbone_id: str) -> tuple[str, str]:
    """``(zoo, name)`` of a backbone id ``zoo/name``, split at the first ``/`` (the one place
    that parses an id, as timm's ``split_model_name_tag``); ``name`` is empty without one."""
    zoo, _, name = backbone_id.partition("/")
    return zoo, name


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
    (:mod:`autotransfer.finetune.cache_views`).


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
            (a linear probe needs no split).
            ``autotransfer.contract.stages.sequential_split`` builds one from a list of stages.
        lora_targets: optional; regexes, each matching a whole module name of ``model``: the
            layers a ``lora`` trial adapts (inside its unfrozen groups). None: every
            ``nn.Linear``, or a CNN's pointwise 1x1 convolutions
            (:mod:`autotransfer.finetune.methods.lora`).
    """

    model: torch.nn.Module
    dim: int
    groups: list[list[str]]
    preprocess: Any
    channels_last: bool = False
    configure: Callable[[dict[str, Any]], None] | None = None
    on_freeze: Callable[[set[str]], None] | None = None
    split: Callable[[int], tuple[torch.nn.Module, Callable[[Any], Any]] | None] | None = None
    lora_targets: tuple[str, ...] | None = None

    def configured(self, params: dict[str, Any], **preprocess_params: Any) -> Any:
        """Set the backbone up for a trial's hyperparameters (:attr:`configure`) and return its
        preprocess configured for them (``preprocess_params`` override ``params`` there, e.g.
        ``augment="none"``)."""
        preprocess = self.preprocess.configure({**params, **preprocess_params})
        if self.configure is not None:
            self.configure(params)
        return preprocess


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone offered by a plugin.

    Attributes:
        id: ``zoo/name``, e.g. ``timm/resnet18.a1_in1k``.
        modality: a registered modality (``image``, ``text``, ``audio`` or a plugin's; checked
            when the entry is registered, :func:`autotransfer.contract.collect.get_modalities`).
        loader: ``loader(pretrained: bool, **options) -> Backbone``.
        params: parameter count when known without loading.
        description: one line shown by ``autotransfer backbones``.
        options: option names the loader accepts besides ``pretrained``.
        metadata: other facts about the entry, set by the zoo; the core reads none of them.
            (The keys ``imagenet_top1``, ``reference_for`` and ``reference_options`` of
            earlier zoos are read into the fields below.)
        imagenet_top1: the published ImageNet-1k top-1 accuracy of the pretrained weights, in
            % (the pre-screen's ``imagenet`` baseline); None when unknown.
        reference_for: a modality: this backbone embeds every dataset of that modality for
            the transfer history's meta-features (so that the core names no zoo's ids).
        reference_options: the preprocessing hyperparameters it embeds with.
        available: ``available(**options)`` raises :class:`BackboneError` (the loader's own
            one-line error) when the pretrained weights are not on this machine, and is a
            cheap look (a file lookup, no model built). Before the first trial the search
            calls it instead of loading each backbone to find out; None: the backbone is
            loaded (:mod:`autotransfer.study.loadable`).
    """

    id: str
    modality: str
    loader: Callable[..., Backbone] = field(repr=False, compare=False)
    params: int | None = None
    description: str = ""
    options: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    imagenet_top1: float | None = None
    reference_for: str | None = None
    reference_options: Mapping[str, Any] = field(default_factory=dict, compare=False)
    available: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("imagenet_top1", "reference_for", "reference_options"):  # earlier zoos
            if key in self.metadata and not getattr(self, key):
                object.__setattr__(self, key, self.metadata[key])
        if self.imagenet_top1 is not None and not 0 <= self.imagenet_top1 <= 100:
            raise PluginError(f"{self.id}: imagenet_top1 must be a % in [0, 100], got "
                              f"{self.imagenet_top1!r}")
        zoo, name = split_id(self.id)
        if not zoo or not name:
            raise PluginError(f"backbone id must look like 'zoo/name', got {self.id!r}")
        if not isinstance(self.modality, str) or not self.modality:
            raise PluginError(f"{self.id}: modality must be a registered modality's name, got "
                              f"{self.modality!r}")

    @property
    def zoo(self) -> str:
        return split_id(self.id)[0]

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
        if not self.modalities or not all(isinstance(m, str) and m for m in self.modalities):
            raise PluginError(f"catalogue {self.zoo!r}: modalities must be registered modalities' "
                              f"names, got {self.modalities!r}")
