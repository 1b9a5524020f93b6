"""The reader of file modalities (image, audio, a plugin's): class folders, split folders, or
a ``path,label`` table."""

from __future__ import annotations

from pathlib import Path, PureWindowsPath
from typing import Any

from autotransfer.data.dataset import ReadResult, Unused
from autotransfer.data.files import class_files, sub_folders
from autotransfer.data.labels import check_single, normalize_label
from autotransfer.data.splits import SPLIT_DIRS, SPLIT_NAMES, split_of
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
            common = [s for s in _COMMON if s in modality.suffixes] or sorted(modality.suffixes)[:5]
            raise DataError(f"{folder}: empty class folder; expected {kind} files ("
                            f"{', '.join(common)} or any of the {len(modality.suffixes)} "
                            "suffixes its decoder reads)")
        by_class.setdefault(folder.name, []).extend(files)
    for loose in (p for p in root.iterdir() if p.is_file() and p.suffix.lower() in
                  modality.suffixes and not p.name.startswith((".", "_"))):
        unused.add(loose, f"{kind} file(s) outside a class folder")
    return by_class


def read_files(root: Path, modality, options=None) -> ReadResult:
    """The reader of a file modality (image, audio, a plugin's): class folders, split folders,
    or a ``path,label`` table (``options`` are not needed)."""
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
    else:
        used = {folder for folder in split_dirs.values() if folder is not None}
        for other in sub_folders(root):
            if other not in used:
                result.unused.add(other, "folder(s) beside the split folders (the splits are "
                                         f"named {SPLIT_NAMES})")
    for split, folder in split_dirs.items():
        if folder is not None:
            by_class = _class_folders(folder, modality, result.unused)
            result.parts[split] = [(p, c) for c, files in by_class.items() for p in files]
            result.where[split] = folder
    return result


def table_path(table: Path, name: str) -> Path:
    """The file a ``path`` cell of ``table`` names: relative to the table's folder, and with
    Windows separators (``data\\images\\x.png``) read as ``/`` where the cell as written
    names no file (a backslash is no path character in a table meant to travel)."""
    file = (table.parent / name).resolve()
    if file.exists() or "\\" not in name or PureWindowsPath(name).anchor:
        return file
    return (table.parent / PureWindowsPath(name).as_posix()).resolve()


def _from_cwd(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it, else absolute."""
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _missing_error(table: Path, modality, missing: list[tuple[int, str, Path]],
                   total: int) -> DataError:
    """One line for every row whose file is missing: the first few, where they were looked
    for, how many rows miss, and a hint when the paths exist from the working directory."""
    line, name, file = missing[0]
    shown = ", ".join(f"line {n} {c!r}" for n, c, _ in missing[1:4])
    others = f"; also {shown}" + (" and more" if len(missing) > 4 else "") if shown else ""
    hint = ""
    if PureWindowsPath(name).drive:
        hint = "; a Windows path from another machine: write paths relative to the table"
    elif Path(name).is_absolute():
        hint = "; an absolute path from another machine? write paths relative to the table"
    else:
        cwd = Path.cwd()
        from_cwd = sum((cwd / PureWindowsPath(n).as_posix()).exists() for _, n, _ in missing)
        if from_cwd and cwd.resolve() != table.parent.resolve():
            hint = (f"; {from_cwd} of them exist relative to the working directory {cwd}, "
                    "but paths are read relative to the table's folder")
    folder = table.parent.resolve()
    where = ("" if Path(name).is_absolute() or PureWindowsPath(name).drive
             or folder == Path.cwd().resolve() else  # the table's folder is where one stands
             f" (looked at {_from_cwd(file)}; paths are relative to the table's folder "
             f"{_from_cwd(folder)})")
    return DataError(f"{table}:{line}: no such {modality.name} file {name!r}{where}; "
                     f"{len(missing)} of {total} row(s) name a missing file{others}{hint}")


def _read_path_table(path: Path, modality) -> dict[str, list[tuple[Path, Any]]]:
    """Rows of a ``path,label[,split]`` table grouped by split (``train`` when no split)."""
    expected = ("expected a header with path,label (and optionally split) for image or "
                "audio files, or text,label for text")
    rows: dict[str, list[tuple[Path, Any]]] = {}
    missing: list[tuple[int, str, Path]] = []
    total = 0
    for line, row in table_records(path, ("path", "label"), expected):
        name = str(row["path"] or "").strip()
        file = table_path(path, name)
        label = row["label"]
        split = split_of(row.get("split"))
        if split is None:
            raise DataError(f"{path}:{line}: split must be one of {SPLIT_NAMES}, "
                            f"got {row.get('split')!r}")
        check_single(label, f"{path}:{line}")
        if not normalize_label(label):
            raise DataError(f"{path}:{line}: empty label")
        total += 1
        if not file.is_file():
            missing.append((line, name, file))
            continue
        rows.setdefault(split, []).append((file, label))
    if missing:
        raise _missing_error(path, modality, missing, total)
    if not rows:
        raise DataError(f"{path}: no rows; expected a header path,label and one row per file")
    return rows
