"""Byte sizes as users write them (``512M``, ``2G``): the cache's bounds, without torch."""

from __future__ import annotations

import re

from autotransfer.errors import OptionError

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value: str | int | None, *, what: str = "max_bytes") -> int | None:
    """``"512M"``, ``"2G"``, ``"1.5g"`` or a byte count -> bytes; None stays None.

    Raises:
        OptionError: ``value`` is not a size; the message names ``what`` (the parameter or
            environment variable it came from).
    """
    if value is None or isinstance(value, int):
        return value
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(value).lower())
    if not found:
        raise OptionError(what, f" must be a size such as 512M or 2G, got {value!r}")
    return int(float(found.group(1)) * _UNITS[found.group(2)])
