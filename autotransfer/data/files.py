"""One way to find a dataset's files: junk ignored, symlinks followed, unused files named.

Every reader (search, prescreen, predict, modality detection, ``inspect``) lists files through
:func:`walk_files` and :func:`class_files`, so they all see the same files.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from autotransfer.data.dataset import Unused

#: Names ignored silently at any depth: operating-system and notebook droppings. Dotfiles and
#: dot-folders (``.DS_Store``, ``.git/``, ``.ipynb_checkpoints/``) are ignored as well.
JUNK_NAMES = ("__MACOSX", "Thumbs.db", "thumbs.db", "ehthumbs.db", "desktop.ini", "Desktop.ini",
              "$RECYCLE.BIN", "System Volume Information", "__pycache__", "*~")


def is_junk(name: str) -> bool:
    """Whether a file or folder name is ignored silently (dotfiles, ``._*``, ``Thumbs.db``...)."""
    return name.startswith(".") or any(fnmatch.fnmatchcase(name, p) for p in JUNK_NAMES)


def walk_files(root: Path) -> Iterator[Path]:
    """Every non-junk file under ``root``, sorted, following symlinked folders and files.

    No loop: a folder whose real path was already visited, or that holds the folder it is
    linked from (a link to a parent), is skipped. Broken symlinks are not files and are left
    out.
    """
    seen: set[str] = set()

    def walk(folder: Path, parent: str = "") -> Iterator[Path]:
        real = os.path.realpath(folder)
        if real in seen or (parent + os.sep).startswith(real + os.sep):
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if is_junk(entry.name):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=True):
                yield from walk(path, real)
            elif entry.is_file(follow_symlinks=True):
                yield path

    yield from walk(Path(root))


def sub_folders(root: Path) -> list[Path]:
    """The non-junk folders (or symlinks to folders) directly in ``root``, sorted by name."""
    return sorted((p for p in Path(root).iterdir() if not is_junk(p.name) and p.is_dir()),
                  key=lambda p: p.name)


def suffix_counts(files: Iterable[Path]) -> dict[str, int]:
    """``{suffix: n}`` of ``files``, lower-cased, most frequent first (``(none)`` for none)."""
    counts: dict[str, int] = {}
    for file in files:
        key = file.suffix.lower() or "(none)"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_counts(counts: dict[str, int]) -> str:
    """``"12 .png, 3 .txt"`` or ``"no files"``."""
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no files"


def class_files(folder: Path, suffixes: frozenset[str], kind: str, unused: Unused) -> list[Path]:
    """The files of one class folder (any depth) whose suffix is in ``suffixes``.

    Other non-junk files are added to ``unused`` with the reason ``not <kind> files (.txt)``.
    """
    used = []
    for file in walk_files(folder):
        suffix = file.suffix.lower()
        if suffix in suffixes:
            used.append(file)
        else:
            unused.add(file, f"not {kind} file(s) ({suffix or 'no suffix'})")
    return used


def did_you_mean(path: Path) -> str:
    """``"; did you mean NAME?"`` naming the closest sibling of a missing ``path`` (difflib,
    like Python's own NameError hint), or ``""`` when none is close or the parent is missing."""
    import difflib

    parent = path.expanduser().parent
    try:
        names = [p.name for p in parent.iterdir() if not is_junk(p.name)]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f"; did you mean {parent / close[0]}?" if close else ""
