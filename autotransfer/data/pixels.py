"""Pillow's decompression-bomb guard, named: the file, its size, and the way to allow it.

Pillow refuses to open an image of more than twice ``PIL.Image.MAX_IMAGE_PIXELS`` pixels
(``DecompressionBombError``) and warns above once that (``DecompressionBombWarning``), without
naming the file. A trusted large image (a scan, a satellite tile, a whole-slide crop) is allowed
by the environment variable ``AUTOTRANSFER_MAX_IMAGE_PIXELS``: a number of pixels, or ``none``
for no limit; it sets ``PIL.Image.MAX_IMAGE_PIXELS`` for the process. Pillow's own warning is
silenced (:func:`quiet_pillow_warning`, before each open) so that the user sees only the line
that names the file and the variable.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable

from PIL import Image

from autotransfer.errors import DataError

ENV = "AUTOTRANSFER_MAX_IMAGE_PIXELS"


def pixel_limit() -> int | None:
    """The limit ``AUTOTRANSFER_MAX_IMAGE_PIXELS`` asks for (Pillow's current one when unset;
    None: no limit).

    Raises:
        DataError: the variable is neither a positive whole number nor ``none``.
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return Image.MAX_IMAGE_PIXELS
    if raw.lower() in ("none", "0", "off"):
        return None
    try:
        value = int(float(raw.replace("_", "")))
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{ENV}={raw!r}: expected a number of pixels (e.g. 300000000) or none")
    return value


def _advice(pixels: int) -> str:
    return (f"if the file is trusted, allow it with the environment variable "
            f"{ENV}={pixels} (or {ENV}=none)")


def _apply() -> bool:
    """Set ``PIL.Image.MAX_IMAGE_PIXELS`` from the variable when it is set; True if changed."""
    if not os.environ.get(ENV, "").strip():
        return False
    limit = pixel_limit()
    changed = limit != Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    return changed


def open_large(path, error: Exception, reopen: Callable[[object], Image.Image]) -> Image.Image:
    """After Pillow's ``DecompressionBombError`` for ``path``: open it again under the limit
    of ``AUTOTRANSFER_MAX_IMAGE_PIXELS`` when that variable changes the limit, else a DataError
    that names the file, its pixels, the limit and the variable."""
    if _apply():
        return reopen(path)
    pixels = _pixels(error) or 0
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    raise DataError(f"{path}: {pixels:,} pixels, over Pillow's decompression-bomb limit of "
                    f"{limit:,} pixels; {_advice(pixels)}")


def warn_large(path, image: Image.Image) -> None:
    """Name ``path`` in a warning when it is over once the limit (Pillow warns, unnamed)."""
    _apply()
    limit = Image.MAX_IMAGE_PIXELS
    pixels = image.size[0] * image.size[1]
    if limit and pixels > limit:
        from autotransfer.data.dataset import DataWarning

        warnings.warn(DataWarning(f"{path}: {pixels:,} pixels, over Pillow's decompression-bomb "
                                  f"warning limit of {limit:,}; {_advice(pixels)}"), stacklevel=3)


def quiet_pillow_warning() -> None:
    """Ignore Pillow's ``DecompressionBombWarning`` (it names no file): :func:`warn_large`
    says the same with the file's name and the setting. A filter is added only when the one
    that now applies to it would show it (a no-op on every later call)."""
    for action, _message, category, _module, _line in warnings.filters:
        if issubclass(Image.DecompressionBombWarning, category):
            if action == "ignore":
                return
            break
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _pixels(error: Exception) -> int | None:
    """The image's pixels as Pillow's error states them (``Image size (N pixels) exceeds``)."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return int(found.group(1)) if found else None
