"""Zoos whose ids name a hub repository or a local ``save_pretrained`` directory.

Shared by the builtin ``hf-text`` and ``hf-audio`` plugins: their skeleton (:class:`HubZoo`:
the listed ids as a catalogue, any other hub id or directory resolved, both hooks), their
entries, transformers imported with its progress bars off (:func:`import_transformers`), the
one-line error when loading fails, and the checks that what loaded is what the user meant
(weights that fit, a real tokenizer). Imports no model library at import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from autotransfer.contract.backbone import BackboneCatalogue, BackboneEntry, split_id
from autotransfer.contract.hookspecs import hookimpl
from autotransfer.contract.hub_ranking import HubQuery, hub_ranking_entries
from autotransfer.contract.ranking import RankingEntry
from autotransfer.errors import BackboneError, first_line

HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
DESCRIPTION = "transformers; hub id or local save_pretrained directory"


def hub_entry(
    zoo: str, modality: str, loader: Callable, name: str, params: int | None = None,
    description: str = "",
) -> BackboneEntry:
    """The entry ``zoo/name`` whose loader is ``loader(name, pretrained=..., ...)``."""
    return BackboneEntry(
        id=f"{zoo}/{name}",
        modality=modality,
        loader=partial(loader, name),
        params=params,
        description=description or DESCRIPTION,
        options=("trust_remote_code",),  # only --trust-remote-code turns it on
    )


@dataclass(frozen=True)
class HubZoo:
    """The skeleton of a zoo whose ids are hub ids or local ``save_pretrained`` directories.

    Its two hooks are the zoo module's own once bound to its names::

        HUB = HubZoo("hf-text", "text", load_hf_text, WELL_KNOWN)
        register_backbones, resolve_backbone = HUB.register_backbones, HUB.resolve_backbone
        register_ranking = HUB.register_ranking  # with ``ranking``: the Hub's metadata online

    Args:
        zoo: the id prefix (``hf-text``).
        modality: of every entry.
        loader: ``loader(name, pretrained=..., label=..., trust_remote_code=...) -> Backbone``.
        well_known: the listed ids: ``{name: (parameter count, description)}``; any other hub
            id or local directory resolves too.
        ranking: which Hub models rank as candidates when the ranking is asked ``online``
            (:mod:`autotransfer.contract.hub_ranking`); None: the zoo offers no ranking.
    """

    zoo: str
    modality: str
    loader: Callable[..., Any]
    well_known: Mapping[str, tuple[int, str]]
    ranking: HubQuery | None = None

    def entry(self, name: str, params: int | None = None, description: str = ""
              ) -> BackboneEntry:
        """The entry ``zoo/name``."""
        return hub_entry(self.zoo, self.modality, self.loader, name, params, description)

    def listed(self) -> list[BackboneEntry]:
        """The listed ids' entries (built when a catalogue is first asked for)."""
        return [self.entry(name, params, f"{description}; weights from the hub")
                for name, (params, description) in self.well_known.items()]

    @hookimpl(tryfirst=True)
    def register_backbones(self, register: Callable[[BackboneCatalogue], None]) -> None:
        register(BackboneCatalogue(self.zoo, (self.modality,), self.listed))

    @hookimpl
    def register_ranking(self, register: Callable[[RankingEntry], None], modality: str,
                         online: bool) -> None:
        """Online, the Hub's most downloaded loadable models of ``ranking``'s pipeline tags;
        offline or without ``online``, nothing (the packaged copies rank alone)."""
        if online and modality == self.modality and self.ranking is not None:
            for entry in hub_ranking_entries(self.zoo, self.modality, self.ranking):
                register(entry)

    @hookimpl
    def resolve_backbone(self, backbone_id: str) -> BackboneEntry | None:
        name = served_name(backbone_id, self.zoo)
        return None if name is None else self.entry(name)


def import_transformers(label: str) -> Any:
    """The ``transformers`` module, its download progress bars off.

    Raises:
        BackboneError: transformers is not installed (naming ``label`` and the install).
    """
    try:
        import transformers
    except ImportError:
        raise BackboneError(f"{label}: needs transformers: pip install transformers") from None
    transformers.utils.logging.disable_progress_bar()
    return transformers


def served_name(backbone_id: str, zoo: str) -> str | None:
    """``name`` when ``backbone_id`` is ``zoo/name`` and names a local directory or a hub id."""
    prefix, name = split_id(backbone_id)
    if prefix != zoo or not name:
        return None
    return name if Path(name).expanduser().is_dir() or HUB_ID.match(name) else None


def source(name: str) -> str:
    """What ``from_pretrained`` gets: the expanded path of a local directory, else the hub id."""
    path = Path(name).expanduser()
    return str(path) if path.is_dir() else name


def load_error(label: str, zoo: str, exc: BaseException) -> BackboneError:
    """The one-line error for a checkpoint that could not be loaded."""
    return BackboneError(
        f"{label}: could not load ({type(exc).__name__}: {first_line(exc, 400)}); offline, give a "
        f"local directory saved with save_pretrained: {zoo}/PATH"
    )


def check_loaded(label: str, source: str, info: dict, total: int) -> None:
    """Refuse a checkpoint none of whose weights fit the model: ``info`` is transformers'
    loading info (``from_pretrained(..., output_loading_info=True)``), ``total`` the number of
    the model's tensors. A model whose every weight is missing would train from random weights
    that its user believes pretrained.

    Raises:
        BackboneError: no weight of ``source`` matched a name of the model.
    """
    missing = list(info.get("missing_keys") or ())
    unexpected = list(info.get("unexpected_keys") or ())
    mismatched = list(info.get("mismatched_keys") or ())
    if total and len(missing) + len(mismatched) >= total:
        detail = f"{len(missing)} of {total} tensors missing (first: {sorted(missing)[0]})"
        if unexpected:
            detail += f", {len(unexpected)} unexpected (first: {sorted(unexpected)[0]})"
        raise BackboneError(
            f"{label}: no weight in {source} matches the model's names ({detail}); save the "
            "model with save_pretrained, or use pretrained: false for random weights"
        )


def check_tokenizer(label: str, source: str, tokenizer) -> None:
    """Refuse a tokenizer with no vocabulary besides its special tokens: what transformers
    builds for a folder without tokenizer files (every word would be ``[UNK]``).

    Raises:
        BackboneError: the tokenizer has only special tokens.
    """
    special = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    size = len(tokenizer)
    if size <= len(special):
        raise BackboneError(
            f"{label}: {source} has no tokenizer files (the tokenizer built without them has "
            f"only its {size} special tokens, so every word would be unknown); save the "
            "tokenizer there with tokenizer.save_pretrained(DIR)"
        )
