"""The builtin modalities (image, text, audio): the core's default plugin for modalities.

Registered through the ``register_modalities`` hook like a third party's (datasette builds its
own features as default plugins the same way); :mod:`autotransfer.contract.manager` always
loads this module. A :class:`~autotransfer.contract.modalities.Modality` names its file
suffixes (derived from the decoder's own format list: Pillow's registered extensions,
libsndfile's ``available_formats()``), a per-file check run before trial 1, a writer of tiny
sample files (used by ``autotransfer.testing``) and its reader. Detection
(:func:`autotransfer.data.load.detect_modality`) and predict's suffix lookup derive from the
registry (:func:`autotransfer.contract.collect.get_modality`), and nothing falls back to a
modality silently: when the data does not say, the error shows what was found and names the
``modality`` option.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from autotransfer.contract.collect import get_modalities
from autotransfer.contract.hookspecs import hookimpl
from autotransfer.contract.modalities import Modality
from autotransfer.data.tables import TABLE_SUFFIXES


def modality_of_suffix(suffix: str) -> str | None:
    """The file modality (image, audio or a plugin's) whose decoder reads ``suffix``, if any."""
    for modality in get_modalities().values():
        if modality.files and suffix.lower() in modality.suffixes:
            return modality.name
    return None


@cache
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


@cache
def _audio_suffixes() -> frozenset[str]:
    """Suffixes of every major format libsndfile (through soundfile) decodes, plus MP3."""
    import soundfile

    suffixes = {".mp3"}
    for fmt in soundfile.available_formats():
        if fmt not in _AUDIO_EXCLUDED:
            suffixes.add("." + fmt.lower())
            suffixes.update(_AUDIO_ALIASES.get(fmt, ()))
    return frozenset(suffixes)


@hookimpl(tryfirst=True)  # the builtins come first (and keep their names)
def register_modalities(register: Callable[[Modality], None]) -> None:
    """image, text and audio, each with its reader, per-file check and sample writer."""
    from autotransfer.data import _audio, _images, _text
    from autotransfer.data.folders import read_files

    register(Modality("image", _image_suffixes(), "image", _images.image_problem,
                      _images.write_samples, read_files))
    register(Modality("text", TABLE_SUFFIXES | {".txt"}, "text", None, _text.sample_texts,
                      _text.read_texts, files=False, default_column="text"))
    register(Modality("audio", _audio_suffixes(), "audio clip", _audio.audio_problem,
                      _audio.write_samples, read_files))
