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


#: What runs the model in :func:`predict`.
RUNTIMES = ("auto", "onnxruntime", "pytorch")


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
    runtime: str = "auto",
) -> list[Prediction]:
    """Predict the class of each input with a model directory written by ``autotransfer train``.

    Args:
        model_dir: the ``--out`` folder of ``autotransfer train``; an ensemble folder of
            ``train --ensemble`` (``ensemble.json``: the members' probabilities averaged with
            their weights, :mod:`autotransfer.model.ensemble`); an ONNX export (its
            ``onnx/`` folder, or a ``.onnx`` file in it), run with ONNX Runtime alone
            (:mod:`autotransfer.model.onnx_predict`); or a ``best.yaml`` that lists an export
            (``search --keep-best``'s ``best-model``; its first export is used,
            :class:`~autotransfer.space.result.BestResult`).
        inputs: files, folders (searched recursively for the model's file types) and CSV files:
            a ``path`` column for images and audio (relative to the CSV), ``text_column`` for
            text (also TSV and JSONL); ``.txt`` files are one text each.
        texts: texts to classify directly (text models).
        text_column: the text column of CSV / TSV / JSONL inputs (default: ``data_options``').
        data_options: how table inputs are read (:class:`~autotransfer.data.options.DataOptions`,
            its ``text`` column; default ``text``), e.g. the search's.
        batch_size: inputs per forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (PyTorch; ONNX Runtime runs on the
            CPU).
        runtime: ``auto`` (ONNX Runtime for an ONNX export, PyTorch for a model directory),
            ``onnxruntime`` (a model directory's ``onnx/`` export) or ``pytorch``.

    Returns:
        One :class:`Prediction` per input, in order (folders sorted by path); an input that
        cannot be decoded is named in a warning and has none (the others are predicted).

    Raises:
        OptionError: ``batch_size`` < 1, a bad ``device`` or ``runtime``, or ``texts`` for a
            model that does not classify text.
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
    if runtime not in RUNTIMES:
        raise OptionError("runtime", f" must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    from autotransfer.model.onnx_predict import is_onnx_export

    model_dir = model_dir_of(model_dir)
    from autotransfer.model.ensemble import is_ensemble_dir

    if is_ensemble_dir(model_dir):  # each member predicted as below, weighted probabilities
        return predict_ensemble(model_dir, inputs, texts=texts, text_column=text_column,
                                data_options=data_options, batch_size=batch_size,
                                device=device, runtime=runtime)
    if runtime == "onnxruntime" or (runtime == "auto" and is_onnx_export(model_dir)):
        return _predict_onnx(model_dir, inputs or [], texts or [], batch_size=batch_size,
                             text_column=DataOptions.of(text_column=text_column).over(
                                 data_options or DataOptions()).column("text") or "text")
    torch_device = device_for(device)
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


def predict_ensemble(directory: str | Path, inputs: list[str | Path] | None = None,
                     **options: Any) -> list[Any]:
    """The weighted average of the members' class probabilities on ``inputs``.

    Args:
        directory: an ensemble folder written by
            :func:`~autotransfer.model.ensemble.train_ensemble`.
        inputs: as :func:`predict`'s.
        **options: :func:`predict`'s (``texts``, ``batch_size``,
            ``device``...), the same for every member.

    Returns:
        One :class:`Prediction` per input that every member
        predicted, in order; ``probabilities`` are ``sum(weight * member's)`` (the weights sum
        to 1, so they sum to 1 too).

    Raises:
        EnsembleDirError: not an ensemble folder
            (:func:`~autotransfer.model.ensemble.read_manifest`), or a member whose classes
            differ from the manifest's.
        DataError, OptionError: as :func:`predict`.
    """
    from autotransfer.model.ensemble import MANIFEST, EnsembleDirError, read_manifest

    directory = Path(directory)
    manifest = read_manifest(directory)
    classes = list(manifest["classes"])
    total = sum(float(m["weight"]) for m in manifest["members"])
    summed: dict[str, dict[str, float]] = {}
    order: list[str] = []
    seen: dict[str, int] = {}
    for member in manifest["members"]:
        found = predict(directory / member["path"], inputs, **options)
        weight = float(member["weight"]) / total
        for p in found:
            if set(p.probabilities) != set(classes):
                raise EnsembleDirError(f"{directory / member['path']}: classes differ from "
                                       f"{directory / MANIFEST}'s")
            if p.input not in summed:
                order.append(p.input)
                summed[p.input] = dict.fromkeys(classes, 0.0)
            seen[p.input] = seen.get(p.input, 0) + 1
            for c, v in p.probabilities.items():
                summed[p.input][c] += weight * v
    everyone = len(manifest["members"])
    return [Prediction(name, max(classes, key=lambda c, n=name: summed[n][c]), summed[name])
            for name in order if seen[name] == everyone]


def _predict_onnx(path: str | Path, inputs: list[str | Path], texts: list[str], *,
                  text_column: str, batch_size: int) -> list[Prediction]:
    """:func:`predict` for an ONNX export (a ``.onnx`` file, its folder, or a model directory
    holding ``onnx/``), with ONNX Runtime alone (:mod:`autotransfer.model.onnx_predict`)."""
    from autotransfer.model.onnx_predict import read_manifest, run_onnx

    model_file, manifest = read_manifest(path)
    modality, classes = manifest["modality"], manifest["classes"]
    names, samples = collect_inputs(modality, inputs, texts, text_column=text_column,
                                    model_dir=str(path))
    if not samples:
        raise DataError("no inputs; give files, folders or CSV files"
                        + (" (or texts)" if modality == "text" else ""))
    kept, probs = run_onnx(model_file, manifest, names, samples, batch_size=batch_size)
    return [Prediction(name, classes[int(row.argmax())],
                       {c: float(p) for c, p in zip(classes, row, strict=True)})
            for name, row in zip(kept, probs, strict=True)]


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
    """``(names shown, samples)``: file paths for images and audio, strings for text.

    Every row is accounted for: an empty or whitespace-only text is kept (the model predicts
    it from no words) and named in one warning; an input that cannot have a prediction (a CSV
    row whose file is missing) is named in another and left out.

    Raises:
        DataError: a path given does not exist or holds no input of the modality, or no input
            is left (the reasons of the first ones).
    """
    names: list[str] = []
    samples: list[Any] = []
    skipped: list[str] = []
    if texts and modality != "text":
        raise OptionError("texts", f" given, but {model_dir} classifies {modality}")
    empty: list[str] = []
    for number, text in enumerate(texts, start=1):
        names.append(text if text.strip() else repr(text))
        samples.append(text)
        if not text.strip():
            empty.append(f"--text {number} ({text!r})")
    suffixes = get_modality(modality).suffixes
    unused = Unused()
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        for file in _files(path, modality, suffixes, unused):
            for name, sample in _read(file, modality, suffixes, text_column, model_dir, skipped):
                names.append(name)
                samples.append(sample)
                if isinstance(sample, str) and not sample.strip():
                    empty.append(name)
    unused.warn()
    _name_skipped(skipped, len(names) + len(skipped))
    _name_empty(empty, len(names))
    return names, samples


def _name_empty(empty: list[str], total: int, shown: int = 5) -> None:
    """One warning naming the empty or whitespace-only texts (predicted from no words)."""
    if not empty:
        return
    import warnings

    from autotransfer.data import DataWarning

    listed = ", ".join(empty[:shown]) + (f" and {len(empty) - shown} more"
                                         if len(empty) > shown else "")
    warnings.warn(DataWarning(f"{len(empty)} of {total} inputs are empty or whitespace-only "
                              f"texts, predicted from no words: {listed}"), stacklevel=3)


def _files(path: Path, modality: str, suffixes, unused: Unused) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = []  # the training reader's discovery: junk ignored, symlinks followed
    for file in walk_files(path):
        if file.suffix.lower() in suffixes:
            files.append(file)
        else:
            unused.add(file, f"not {modality} file(s) ({file.suffix.lower() or 'none'})")
    if not files:
        raise DataError(f"{path}: no {modality} files in this folder; expected "
                        + ", ".join(sorted(suffixes)[:12]) + ", ...")
    return files


def _name_skipped(skipped: list[str], total: int, shown: int = 5) -> None:
    """One warning naming the inputs left out; a DataError when every input was."""
    if not skipped:
        return
    import warnings

    from autotransfer.data import DataWarning

    listed = "; ".join(skipped[:shown]) + (f"; and {len(skipped) - shown} more"
                                           if len(skipped) > shown else "")
    if len(skipped) == total:
        raise DataError(f"none of the {total} inputs can be predicted: {listed}")
    warnings.warn(DataWarning(f"{len(skipped)} of {total} inputs have no prediction: {listed}"),
                  stacklevel=3)


def _read(file: Path, modality: str, suffixes, text_column: str, model_dir: str,
          skipped: list[str]):
    suffix = file.suffix.lower()
    if modality == "text":
        if suffix == ".txt":
            return [(str(file), decode_text(file).strip())]
        if suffix in (".csv", ".tsv", ".jsonl"):
            return [(f"{file}:{line}", text) for line, text in _text_rows(file, text_column)]
    elif suffix in suffixes:
        return [(str(file), file)]
    elif suffix == ".csv":
        return [(str(p), p) for p in _path_rows(file, suffixes, modality, skipped)]
    found = modality_of_suffix(suffix) or (
        "text" if suffix in get_modality("text").suffixes else None)
    kind = f"an {found}" if found in ("image", "audio") else f"a {found or suffix or 'suffix-less'}"
    shown = sorted(suffixes)[:12] + ([".csv"] if modality != "text" else [])
    expected = ", ".join(shown) + (", ..." if len(suffixes) > 12 else "")
    raise DataError(f"{file}: {kind} file, but {model_dir} classifies {modality}; "
                    f"expected {expected} or a folder of them")


def _text_rows(path: Path, column: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every row of a CSV / TSV (header with ``column``) or JSONL file,
    empty and whitespace-only texts included (predict accounts for every row)."""
    expected = f"expected {column!r} in every row (text_column)"
    return [(line, str(record[column] or "")) for line, record
            in table_records(path, (column,), expected, blank_rows=True)]


def _path_rows(path: Path, suffixes, modality: str, skipped: list[str]) -> list[Path]:
    """The files of a CSV's ``path`` column, relative to the CSV; a row whose file is missing
    or of another kind is named in ``skipped``."""
    expected = f"expected a CSV with a path column of {modality} files"
    files = []
    for line, row in table_records(path, ("path",), expected, blank_rows=True):
        file = table_path(path, (row["path"] or "").strip())
        if not (row["path"] or "").strip():
            skipped.append(f"{path}:{line}: empty path")
        elif not file.is_file():
            skipped.append(f"{path}:{line}: no such file {row['path']!r} (looked at {file})")
        elif file.suffix.lower() not in suffixes:
            skipped.append(f"{path}:{line}: {row['path']!r} is not {modality} "
                           f"({', '.join(sorted(suffixes))})")
        else:
            files.append(file)
    return files
