"""Hugging Face columns by what they hold: images and audio saved without their feature.

pyarrow writes an image column as ``struct<bytes, path>`` or ``binary`` when the Hugging Face
metadata is lost (pandas, polars, DuckDB, ``pyarrow.parquet.write_table``); such a column is an
image or audio column when its first values decode as one (Pillow, then libsndfile), and is
cast to ``datasets.Image`` / ``datasets.Audio`` (``decode=False``), as ``datasets`` itself
stores them. A string column whose values are image or audio file names is never text: its
files are read when they exist (relative to the dataset's folder, or absolute), else it is an
error that names the column.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from autotransfer.data.modality import modality_of_suffix
from autotransfer.errors import DataError

_SNIFF_ROWS = 20
_KIND = {"image": "Image", "audio": "Audio"}


def _bytes_of(value: Any) -> bytes | None:
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, bytes) and value else None


def sniff(data: bytes) -> str | None:
    """``image`` when Pillow identifies ``data``, ``audio`` when libsndfile does, else None."""
    from PIL import Image, UnidentifiedImageError

    from autotransfer.data.pixels import quiet_pillow_warning

    quiet_pillow_warning()  # a huge image is named when it is decoded (open_image)
    try:
        with Image.open(io.BytesIO(data)):
            return "image"
    except Image.DecompressionBombError:  # an image: open_image names it and the setting
        return "image"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    try:
        import soundfile

        soundfile.info(io.BytesIO(data))
        return "audio"
    except Exception:  # libsndfile's errors for what is not audio
        return None


def _is_raw(feature: Any) -> bool:
    """``struct<bytes, ...>`` or ``binary``: how pyarrow keeps encoded files."""
    if isinstance(feature, dict):
        return "bytes" in feature
    return getattr(feature, "dtype", None) in ("binary", "large_binary")


def raw_media(dataset: Any) -> dict[str, str]:
    """``{column: "image" | "audio"}`` for the struct and binary columns whose first values
    decode as images or audio."""
    found = {}
    head = dataset.select(range(min(_SNIFF_ROWS, dataset.num_rows))).with_format("arrow")
    for column, feature in dataset.features.items():
        if not _is_raw(feature):
            continue
        values = [b for b in map(_bytes_of, head[column].to_pylist()) if b]
        kinds = {sniff(b) for b in values[:3]}
        if len(kinds) == 1 and None not in kinds:
            found[column] = kinds.pop()
    return found


def path_media(dataset: Any) -> dict[str, tuple[str, list[str]]]:
    """``{column: (modality, first values)}`` for string columns of image or audio file names
    (nine in ten of the first values end in a suffix the image or audio decoder reads)."""
    found = {}
    head = dataset.select(range(min(_SNIFF_ROWS * 5, dataset.num_rows))).with_format("arrow")
    for column, feature in dataset.features.items():
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            continue
        values = [str(v).strip() for v in head[column].to_pylist() if v and str(v).strip()]
        kinds = [modality_of_suffix(Path(v.replace("\\", "/")).suffix) for v in values]
        named = [k for k in kinds if k]
        if values and len(named) >= 0.9 * len(values):
            found[column] = (max(set(named), key=named.count), values[:3])
    return found


def cast_raw(splits: dict[str, Any]) -> dict[str, Any]:
    """``splits`` with their struct / binary image and audio columns cast to ``Image`` /
    ``Audio`` (``decode=False``), found by decoding the first split's first values."""
    datasets = _datasets()
    raw = raw_media(next(iter(splits.values())))
    out = {}
    for name, dataset in splits.items():
        for column, modality in raw.items():
            if column in dataset.features:
                feature = getattr(datasets, _KIND[modality])(decode=False)
                dataset = dataset.cast_column(column, feature)
        out[name] = dataset
    return out


def read_path_column(splits: dict[str, Any], column: str, where: str,
                     base: Path | None) -> tuple[dict[str, Any], str] | None:
    """``(splits, modality)`` with the string ``column`` of image or audio file names read as
    files, or None when ``column`` does not hold file names.

    Raises:
        DataError: some of the files do not exist (names the column, a few values, how many
            miss and where they were looked for).
    """
    found = path_media(next(iter(splits.values()))).get(column)
    if found is None:
        return None
    modality, examples = found
    out = {name: _read_paths(dataset, column, modality, examples, where, name, base)
           if column in dataset.features else dataset for name, dataset in splits.items()}
    return out, modality


def _read_paths(dataset, column, modality, examples, where, split, base):
    """The path column cast to ``Image`` / ``Audio`` with absolute paths, or a DataError."""
    datasets = _datasets()

    def resolve(value):
        if not value:
            return value
        path = Path(str(value).strip().replace("\\", "/")).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return str(path)

    values = [v for v in dataset.with_format("arrow")[column].to_pylist() if v]
    missing = [v for v in values if not Path(resolve(v)).is_file()]
    if missing:
        looked = f" (looked relative to {base})" if base is not None else ""
        raise DataError(
            f"{where} split {split!r}: column {column!r} holds {modality} file names "
            f"({', '.join(map(repr, examples))}), not texts, and {len(missing)} of "
            f"{len(values)} are not files{looked}, first {missing[0]!r}; store the "
            f"{modality}s in the dataset (datasets.{_KIND[modality]}()) or name the files "
            "relative to the dataset's folder")
    # in memory: a cache file would be written beside the user's dataset
    dataset = dataset.map(lambda batch: {column: [resolve(v) for v in batch[column]]},
                          batched=True, keep_in_memory=True)
    return dataset.cast_column(column, getattr(datasets, _KIND[modality])(decode=False))


def _datasets():
    import datasets

    return datasets
