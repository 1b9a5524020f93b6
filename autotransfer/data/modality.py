"""The modality registry: what each modality reads, how it is detected, and how it is checked.

A :class:`Modality` names its file suffixes (derived from the decoder's own format list:
Pillow's registered extensions, libsndfile's ``available_formats()``), a per-file check run
before trial 1, and a writer of tiny sample files (used by ``autotransfer.testing``). Detection
(:func:`detect_modality`) and predict's suffix lookup derive from this registry, and nothing
falls back to a modality silently: when the data does not say, the error shows what was found
and names ``--modality``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.data.files import describe_counts, suffix_counts, walk_files
from autotransfer.data.tables import TABLE_SUFFIXES, table_columns, table_records
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


def _by_files(root: Path, files: list[Path], what: str) -> str:
    """The modality of most ``files``; an error with the suffix counts when it is unclear."""
    counts = suffix_counts(files)
    found: dict[str, int] = {}
    for suffix, n in counts.items():
        name = modality_of_suffix(suffix)
        if name is not None:
            found[name] = found.get(name, 0) + n
    total = sum(found.values())
    best = max(found, key=found.get) if found else None
    if best is not None and found[best] >= 0.9 * total:
        return best
    reason = "no image or audio files" if best is None else "both image and audio files"
    raise DataError(f"{root}: cannot tell the modality ({reason}; {what}: "
                    f"{describe_counts(counts)}); name it with modality: image, audio or text")


def detect_modality(path: str | Path, *, text_column: str = "text") -> str:
    """``image``, ``audio`` or ``text``, from the layout and the files under ``path``.

    - A table (``.csv``, ``.tsv``, ``.jsonl``) with ``text_column`` and no ``path`` column is
      text; with a ``path`` column it is image or audio by the suffixes of the listed files.
    - A folder holding ``train.csv`` / ``.tsv`` / ``.jsonl`` is text.
    - Otherwise a folder is image or audio by the files in it (junk ignored, symlinks
      followed): the modality of at least 90% of the image and audio files.

    Raises:
        DataError: the modality cannot be told; says what was found and names ``--modality``.
    """
    root = Path(path).expanduser()
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix not in TABLE_SUFFIXES:
            raise DataError(
                f"{root}: expected a folder of class sub-folders, a .csv (path,label or "
                "text,label), a .tsv or a .jsonl file"
            )
        columns = table_columns(root)
        if text_column in columns and "path" not in columns:
            return "text"
        if "path" not in columns:
            raise DataError(
                f"{root}: missing column 'path'; expected a header with path,label (and "
                "optionally split) for image or audio files, or text,label for text, found "
                f"{','.join(columns) or 'nothing'}"
            )
        listed = []
        for _, row in table_records(root, ("path",), "expected a path column"):
            listed.append(Path(str(row["path"] or "").strip()))
            if len(listed) >= 500:
                break
        return _by_files(root, listed, "its path column lists")
    if root.is_dir():
        if any((root / f"train{s}").is_file() for s in TABLE_SUFFIXES):
            return "text"
        return _by_files(root, list(walk_files(root)), "found")
    raise DataError(f"{root}: no such file or folder")


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
    from autotransfer.data._source import read_files

    register_modality(Modality("image", _image_suffixes(), "image", _images.image_problem,
                               _images.write_samples, read_files))
    register_modality(Modality("audio", _audio_suffixes(), "audio clip", _audio.audio_problem,
                               _audio.write_samples, read_files))
    register_modality(Modality("text", TABLE_SUFFIXES | {".txt"}, "text", None,
                               _text.sample_texts, _text.read_texts))
