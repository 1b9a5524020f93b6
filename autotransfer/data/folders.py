"""The image and audio reader: class folders, split folders, or a ``path,label`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotransfer.data.dataset import ReadResult, Unused
from autotransfer.data.files import class_files, sub_folders
from autotransfer.data.labels import normalize_label
from autotransfer.data.splits import SPLIT_DIRS
from autotransfer.data.tables import table_records
from autotransfer.errors import DataError

_COMMON = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".wav", ".flac", ".mp3", ".ogg")


def _class_folders(root: Path, modality, unused: Unused) -> dict[str, list[Path]]:
    """Files by raw class name from ``root/<class>/**``; errors name the folder at fault."""
    kind = modality.noun
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected a folder with one sub-folder per class")
    folders = sub_folders(root)
    if not folders:
        raise DataError(
            f"{root}: no class sub-folders; expected one sub-folder of {kind}s per class "
            "(or train/ and val/ folders of that shape, a CSV with path,label, or text files)"
        )
    by_class: dict[str, list[Path]] = {}
    for folder in folders:
        files = class_files(folder, modality.suffixes, kind, unused)
        if not files:
            common = [s for s in _COMMON if s in modality.suffixes]
            raise DataError(f"{folder}: empty class folder; expected {kind} files ("
                            f"{', '.join(common)} or any of the {len(modality.suffixes)} "
                            "suffixes its decoder reads)")
        by_class.setdefault(folder.name, []).extend(files)
    for loose in (p for p in root.iterdir() if p.is_file() and p.suffix.lower() in
                  modality.suffixes and not p.name.startswith((".", "_"))):
        unused.add(loose, f"{kind} file(s) outside a class folder")
    return by_class


def read_files(root: Path, modality, **_options) -> ReadResult:
    """The image or audio reader: class folders, split folders, or a ``path,label`` table."""
    if root.is_file():
        parts = _read_path_table(root, modality)
        return ReadResult(parts, dict.fromkeys(parts, root))
    result = ReadResult({}, {})
    split_dirs = {
        split: next((root / n for n in names if (root / n).is_dir()), None)
        for split, names in SPLIT_DIRS.items()
    }
    if split_dirs["train"] is None:
        split_dirs = {"train": root}
    for split, folder in split_dirs.items():
        if folder is not None:
            by_class = _class_folders(folder, modality, result.unused)
            result.parts[split] = [(p, c) for c, files in by_class.items() for p in files]
            result.where[split] = folder
    return result


def _read_path_table(path: Path, modality) -> dict[str, list[tuple[Path, Any]]]:
    """Rows of a ``path,label[,split]`` table grouped by split (``train`` when no split)."""
    expected = ("expected a header with path,label (and optionally split) for image or "
                "audio files, or text,label for text")
    rows: dict[str, list[tuple[Path, Any]]] = {}
    for line, row in table_records(path, ("path", "label"), expected):
        name = str(row["path"] or "").strip()
        file = (path.parent / name).resolve()
        label = row["label"]
        split = str(row.get("split") or "train").strip().lower()
        if split not in SPLIT_DIRS:
            raise DataError(f"{path}:{line}: split must be train, val or test, got {split!r}")
        if not normalize_label(label):
            raise DataError(f"{path}:{line}: empty label")
        if not file.is_file():
            raise DataError(f"{path}:{line}: no such {modality.name} file {name!r}")
        rows.setdefault(split, []).append((file, label))
    if not rows:
        raise DataError(f"{path}: no rows; expected a header path,label and one row per file")
    return rows
