"""The modality registry: what each modality reads and how it is checked.

A :class:`Modality` names its file suffixes (derived from the decoder's own format list:
Pillow's registered extensions, libsndfile's ``available_formats()``), a per-file check run
before trial 1, and a writer of tiny sample files (used by ``autotransfer.testing``). Detection
(:func:`autotransfer.data.load.detect_modality`) and predict's suffix lookup derive from this
registry, and nothing falls back to a modality silently: when the data does not say, the error
shows what was found and names the ``modality`` option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.data.tables import TABLE_SUFFIXES
from autotransfer.errors import DataError

#: per-file check: ``(problem, note)``; a problem makes the file unusable (it is skipped or, past
#: the threshold, the data is an error), a note is only reported
Check = Callable[[Path], tuple[str | None, str | None]]


@dataclass(frozen=True)
class Modality:
    """One kind of input.

    Attributes:
        name: ``image``, ``audio``, ``text``.
        suffixes: lower-case file suffixes its decoder reads (``.png``, ``.mp3``...).
        noun: what one file is called in messages (``image``, ``audio clip``).
        check: the per-file check before trial 1 (None: nothing to check per file).
        sample: writes ``n`` tiny samples into a folder and returns their paths (images,
            audio) or texts, for conformance tests.
        reader: ``reader(root, modality, text_column=, label_column=)`` -> ``ReadResult``
            (samples with raw labels by split); labels are normalised by ``load_data``.
    """

    name: str
    suffixes: frozenset[str]
    noun: str
    check: Check | None = None
    sample: Callable[[Path, int], list] | None = None
    reader: Callable[..., Any] | None = None

    def read(self, root: Path, **options: Any):
        """This modality's reader applied to ``root`` (a ``ReadResult``)."""
        if self.reader is None:
            raise DataError(f"{root}: the {self.name} modality has no reader")
        return self.reader(root, self, **options)


MODALITIES: dict[str, Modality] = {}


def register_modality(modality: Modality) -> Modality:
    """Add (or replace) a modality in the registry; returns it."""
    MODALITIES[modality.name] = modality
    return modality


def get_modality(name: str) -> Modality:
    """The registered modality ``name``.

    Raises:
        DataError: unknown name (lists the known ones).
    """
    _register_builtins()
    if name not in MODALITIES:
        raise DataError(f"modality must be one of {', '.join(MODALITIES)}, got {name!r}")
    return MODALITIES[name]


def modality_of_suffix(suffix: str) -> str | None:
    """The file modality (image or audio) whose decoder reads ``suffix``, if any."""
    _register_builtins()
    for modality in MODALITIES.values():
        if modality.name != "text" and suffix.lower() in modality.suffixes:
            return modality.name
    return None


def _image_suffixes() -> frozenset[str]:
    """Every extension Pillow registers for a format it can decode (not stubs, not EPS)."""
    from PIL import Image, ImageFile

    Image.init()
    readable = set()
    for suffix, fmt in Image.registered_extensions().items():
        factory = Image.OPEN.get(fmt, (None,))[0]
        if factory is None or fmt in ("EPS", "MPEG", "IPTC"):  # need ghostscript / no decoder
            continue
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            continue
        readable.add(suffix.lower())
    return frozenset(readable)


#: extra file suffixes of libsndfile's major formats (the format names are suffixes too)
_AUDIO_ALIASES = {"AIFF": (".aif", ".aifc"), "OGG": (".oga", ".opus"), "WAVEX": (".wav",),
                  "RF64": (".wav",), "NIST": (".sph",), "IRCAM": (".sf",), "AU": (".snd",),
                  "SVX": (".8svx", ".iff"), "MPC2K": (".mpc",)}
#: formats that need parameters a file does not carry (RAW) or whose suffix means other things
_AUDIO_EXCLUDED = {"RAW", "MAT4", "MAT5"}


def _audio_suffixes() -> frozenset[str]:
    """Suffixes of every major format libsndfile (through soundfile) decodes, plus MP3."""
    import soundfile

    suffixes = {".mp3"}
    for fmt in soundfile.available_formats():
        if fmt not in _AUDIO_EXCLUDED:
            suffixes.add("." + fmt.lower())
            suffixes.update(_AUDIO_ALIASES.get(fmt, ()))
    return frozenset(suffixes)


def _register_builtins() -> None:
    if {"image", "audio", "text"} <= set(MODALITIES):
        return
    from autotransfer.data import _audio, _images, _text
    from autotransfer.data.folders import read_files

    register_modality(Modality("image", _image_suffixes(), "image", _images.image_problem,
                               _images.write_samples, read_files))
    register_modality(Modality("audio", _audio_suffixes(), "audio clip", _audio.audio_problem,
                               _audio.write_samples, read_files))
    register_modality(Modality("text", TABLE_SUFFIXES | {".txt"}, "text", None,
                               _text.sample_texts, _text.read_texts))
