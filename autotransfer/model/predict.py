"""``autotransfer predict``: class probabilities from a model directory for files, folders, CSVs.

Inputs go through the exact preprocessing of training (the backbone's ``Preprocess``), rebuilt
from ``autotransfer.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.contract.collect import get_modality
from autotransfer.data.dataset import Unused
from autotransfer.data.files import walk_files
from autotransfer.data.folders import table_path
from autotransfer.data.modality import modality_of_suffix
from autotransfer.data.options import DataOptions
from autotransfer.data.tables import decode_text, table_records
from autotransfer.errors import DataError, OptionError, first_line
from autotransfer.space.result import BestResult


def model_dir_of(path: str | Path) -> Path:
    """``path`` itself, or for a ``best.yaml`` the folder of its first export.

    Raises:
        ModelDirError: a ``best.yaml`` that is unreadable or lists no export.
    """
    path = Path(path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return path
    import yaml

    from autotransfer.model.export import ModelDirError

    try:
        best = BestResult.parse(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
        raise ModelDirError(f"{path}: not a readable best.yaml ({first_line(exc)})") from None
    found = best.export_dir(path)
    if found is None:
        raise ModelDirError(f"{path}: lists no exported model (exports:); run autotransfer "
                            f"train {path} --out model, or search with --keep-best")
    return found


@dataclass
class Prediction:
    """One input's predicted class and the probability of every class."""

    input: str
    label: str
    probabilities: dict[str, float]

    @property
    def probability(self) -> float:
        return self.probabilities[self.label]


def predict(
    model_dir: str | Path,
    inputs: list[str | Path] | None = None,
    *,
    texts: list[str] | None = None,
    text_column: str | None = None,
    data_options: DataOptions | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> list[Prediction]:
    """Predict the class of each input with a model directory written by ``autotransfer train``.

    Args:
        model_dir: the ``--out`` folder of ``autotransfer train``, or a ``best.yaml`` that
            lists an export (``search --keep-best``'s ``best-model``; its first export is
            used, :class:`~autotransfer.space.result.BestResult`).
        inputs: files, folders (searched recursively for the model's file types) and CSV files:
            a ``path`` column for images and audio (relative to the CSV), ``text_column`` for
            text (also TSV and JSONL); ``.txt`` files are one text each.
        texts: texts to classify directly (text models).
        text_column: the text column of CSV / TSV / JSONL inputs (default: ``data_options``').
        data_options: how table inputs are read (:class:`~autotransfer.data.options.DataOptions`,
            its ``text`` column; default ``text``), e.g. the search's.
        batch_size: inputs per forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        One :class:`Prediction` per input, in order (folders sorted by path); an input that
        cannot be decoded is named in a warning and has none (the others are predicted).

    Raises:
        OptionError: ``batch_size`` < 1, a bad ``device``, or ``texts`` for a model that does
            not classify text.
        ModelDirError: ``model_dir`` is not a model directory written by ``autotransfer train``.
        DataError: an input file is missing, every input is unreadable, or there are no
            inputs.

    Example:
        >>> import autotransfer
        >>> for p in autotransfer.predict("model", ["photo.png"]):  # doctest: +SKIP
        ...     print(p.input, p.label, round(p.probability, 3))

    Long (as a reason): a linear story (check, load the model, collect inputs,
    encode, run, rank) that reads best top to bottom.
    """
    import numpy as np
    import torch

    from autotransfer.data import LabelledData, Split, iterate_batches
    from autotransfer.finetune.device import device_for
    from autotransfer.model.export import load_model

    if batch_size < 1:
        raise OptionError("batch_size", f" must be >= 1, got {batch_size}")
    torch_device = device_for(device)
    model_dir = model_dir_of(model_dir)
    loaded = load_model(model_dir)
    read = DataOptions.of(text_column=text_column).over(data_options or DataOptions())
    names, samples = collect_inputs(loaded.modality, inputs or [], texts or [],
                                    text_column=read.column("text") or "text",
                                    model_dir=str(model_dir))
    if not samples:
        raise DataError("no inputs; give files, folders or CSV files"
                        + (" (or texts)" if loaded.modality == "text" else ""))

    def as_data(chosen: list[Any]) -> LabelledData:
        labels = np.zeros(len(chosen), dtype=np.int64)
        split = (Split([], labels, list(chosen)) if loaded.modality == "text"
                 else Split(list(chosen), labels))
        empty = Split([], np.zeros(0, dtype=np.int64))
        return LabelledData(loaded.modality, loaded.classes, split, empty, None,
                            Path(model_dir))

    try:
        x, y = loaded.preprocess.encode(as_data(samples), "train")
    except DataError:  # a bad file: named in a warning, the others are still predicted
        names, samples = skip_unreadable(names, samples, as_data, loaded.preprocess)
        x, y = loaded.preprocess.encode(as_data(samples), "train")
    model = loaded.model.to(torch_device)
    probabilities = []
    with torch.inference_mode():
        for batch, _ in iterate_batches(x, y, batch_size, shuffle=False):
            logits = model(loaded.preprocess.to_input(batch, device=torch_device))
            probabilities.append(logits.float().softmax(-1).cpu())
    probs = torch.cat(probabilities).numpy()
    classes = loaded.classes
    return [
        Prediction(name, classes[int(row.argmax())],
                   {c: float(p) for c, p in zip(classes, row, strict=True)})
        for name, row in zip(names, probs, strict=True)
    ]


def skip_unreadable(names: list[str], samples: list[Any], as_data, preprocess,
                    shown: int = 5) -> tuple[list[str], list[Any]]:
    """The inputs that encode, one by one (only after the whole batch failed); the others are
    named in one warning with their reasons.

    Raises:
        DataError: no input can be read (the first reasons).
    """
    import warnings

    from autotransfer.data import DataWarning

    kept_names, kept, bad = [], [], []
    for name, sample in zip(names, samples, strict=True):
        data = as_data([sample])
        data.store = "memory"  # one sample at a time: nothing to keep in the encoded store
        try:
            preprocess.encode(data, "train")
        except DataError as exc:
            bad.append(str(exc) if name in str(exc) else f"{name}: {exc}")
            continue
        kept_names.append(name)
        kept.append(sample)
    listed = "; ".join(bad[:shown]) + (f"; and {len(bad) - shown} more" if len(bad) > shown
                                       else "")
    if not kept:
        raise DataError(f"none of the {len(names)} inputs could be read: {listed}")
    warnings.warn(DataWarning(f"{len(bad)} of {len(names)} inputs could not be read and have "
                              f"no prediction: {listed}"), stacklevel=3)
    return kept_names, kept


def collect_inputs(
    modality: str, inputs: list[str | Path], texts: list[str], *, text_column: str,
    model_dir: str,
) -> tuple[list[str], list[Any]]:
    """``(names shown, samples)``: file paths for images and audio, strings for text."""
    names: list[str] = []
    samples: list[Any] = []
    if texts and modality != "text":
        raise OptionError("texts", f" given, but {model_dir} classifies {modality}")
    for text in texts:
        names.append(text)
        samples.append(text)
    suffixes = get_modality(modality).suffixes
    unused = Unused()
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_dir():  # the training reader's discovery: junk ignored, symlinks followed
            files = []
            for file in walk_files(path):
                if file.suffix.lower() in suffixes:
                    files.append(file)
                else:
                    unused.add(file, f"not {modality} file(s) ({file.suffix.lower() or 'none'})")
            if not files:
                raise DataError(f"{path}: no {modality} files in this folder; expected "
                                + ", ".join(sorted(suffixes)[:12]) + ", ...")
        else:
            files = [path]
        for file in files:
            for name, sample in _read(file, modality, suffixes, text_column, model_dir):
                names.append(name)
                samples.append(sample)
    unused.warn()
    return names, samples


def _read(file: Path, modality: str, suffixes, text_column: str, model_dir: str):
    suffix = file.suffix.lower()
    if modality == "text":
        if suffix == ".txt":
            text = decode_text(file).strip()
            if not text:
                raise DataError(f"{file}: empty text file")
            return [(str(file), text)]
        if suffix in (".csv", ".tsv", ".jsonl"):
            return [(f"{file}:{line}", text) for line, text in _text_rows(file, text_column)]
    elif suffix in suffixes:
        return [(str(file), file)]
    elif suffix == ".csv":
        return [(str(p), p) for p in _path_rows(file, suffixes, modality)]
    found = modality_of_suffix(suffix) or (
        "text" if suffix in get_modality("text").suffixes else None)
    kind = f"an {found}" if found in ("image", "audio") else f"a {found or suffix or 'suffix-less'}"
    shown = sorted(suffixes)[:12] + ([".csv"] if modality != "text" else [])
    expected = ", ".join(shown) + (", ..." if len(suffixes) > 12 else "")
    raise DataError(f"{file}: {kind} file, but {model_dir} classifies {modality}; "
                    f"expected {expected} or a folder of them")


def _text_rows(path: Path, column: str) -> list[tuple[int, str]]:
    """``(line, text)`` of a CSV / TSV (header with ``column``) or JSONL file."""
    expected = f"expected {column!r} in every row (text_column)"
    rows = [(line, str(record[column] or "")) for line, record
            in table_records(path, (column,), expected)]
    for line, text in rows:
        if not text.strip():
            raise DataError(f"{path}:{line}: empty text")
    return rows


def _path_rows(path: Path, suffixes, modality: str) -> list[Path]:
    """The files of a CSV's ``path`` column, relative to the CSV."""
    expected = f"expected a CSV with a path column of {modality} files"
    files = []
    for line, row in table_records(path, ("path",), expected):
        file = table_path(path, (row["path"] or "").strip())
        if not file.is_file():
            raise DataError(f"{path}:{line}: no such file {row['path']!r} (looked at {file})")
        if file.suffix.lower() not in suffixes:
            raise DataError(f"{path}:{line}: {row['path']!r} is not {modality} "
                            f"({', '.join(sorted(suffixes))})")
        files.append(file)
    return files
