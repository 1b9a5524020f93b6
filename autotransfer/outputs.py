"""Output folders checked before any work: a folder that cannot be written fails at once.

``search`` and ``train`` write their results at the end (``leaderboard.csv``, ``best.yaml``, a
model directory). A path that is a file, lies under a file, is read-only or on a full disk would
otherwise fail after the trials or the training ran. :func:`check_out_dir` proves the folder
writable with a real write (``os.access`` alone is not enough: root passes it on read-only and
immutable folders), and leaves nothing behind: no folder is created, the probe file is removed.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from autotransfer.errors import OptionError

# Bytes the probe writes and syncs: enough that a full disk refuses it, small enough to be free.
PROBE_BYTES = 4096
_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (a read-only or immutable folder)",
}


def check_out_dir(out: str | Path, *, option: str = "out") -> Path:
    """``out`` made absolute (``~`` expanded), once it is known that results can be written.

    The folder may exist (it is written into) or not (it will be created under its nearest
    existing parent). A small file is written, synced and removed in the folder that will hold
    the results, so that a read-only, immutable or full location is found now.

    Args:
        out: the output folder.
        option: the Python name of the option, for the error.

    Raises:
        OptionError: ``out`` (or a parent of it) is a file, or the location cannot be written
            (read-only, no permission, disk full), naming the path and the reason.
    """
    path = Path(out).expanduser().absolute()
    shown = str(out)
    if path.exists() and not path.is_dir():
        raise OptionError(option, f" {shown!r} is an existing file; expected a folder for the "
                                  "results (a new or an existing one)")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OptionError(option, f" {shown!r} cannot be created: {str(parent)!r} is a file, "
                                  "not a folder")
    where = "" if parent == path else f" (its nearest existing folder {str(parent)!r})"
    try:
        _probe(parent)
    except OSError as exc:
        why = _WHY.get(exc.errno, exc.strerror or type(exc).__name__)
        raise OptionError(option, f" {shown!r} cannot be written{where}: {why}") from None
    return path


def _probe(folder: Path) -> None:
    """Write, sync and remove a small file in ``folder``; an OSError says why it failed."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    handle, name = tempfile.mkstemp(prefix=".autotransfer-write-check-", dir=folder)
    try:
        os.write(handle, b"\0" * PROBE_BYTES)
        os.fsync(handle)
    finally:
        os.close(handle)
        os.unlink(name)
