"""``autotransfer evaluate``: score an exported model on labelled data, with 95% intervals.

The data is read as a search reads it (class sub-folders, split folders, a ``path,label`` or
``text,label`` table); its ``test`` split is scored when it has one, else every example. The
predictions are :func:`autotransfer.model.predict.predict`'s (the training preprocessing), the
scores :mod:`.scores`' (scikit-learn) and the intervals :mod:`.intervals`' (Wilson for accuracy
and each class's recall, a bootstrap for macro-F1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autotransfer.contract.collect import get_modality
from autotransfer.data.hf import is_hf_source
from autotransfer.data.labels import normalize_parts
from autotransfer.data.load import check_source
from autotransfer.data.options import DataOptions
from autotransfer.errors import DataError
from autotransfer.model.ensemble import is_ensemble_dir, read_manifest
from autotransfer.model.export import read_meta
from autotransfer.study.results.intervals import score_ci95, wilson


@dataclass
class Evaluation:
    """Scores of a model on labelled data (fractions in [0, 1], intervals ``[low, high]``)."""

    model: str
    data: str
    split: str  # "test", or "all" (every example of the data)
    examples: int  # scored (an unreadable input is named in a warning and not scored)
    accuracy: float
    accuracy_ci95: list[float] | None
    macro_f1: float
    macro_f1_ci95: list[float] | None
    per_class: dict[str, dict[str, Any]]  # precision, recall, f1, support, recall_ci95
    confusion: list[list[int]]  # rows: true class, columns: predicted, in the model's order

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def labelled_examples(data: str | Path, data_options: DataOptions, modality: str
                      ) -> tuple[str, list[tuple[Any, str]]]:
    """``(split, [(sample, class)])``: the data's test split when it has one, else all of it.

    Raises:
        DataError: the data cannot be read, or is a Hugging Face dataset.
    """
    if is_hf_source(data):
        raise DataError(f"{data}: evaluate reads folders and CSV/TSV/JSONL files; save the "
                        "Hugging Face dataset's split as one of those")
    root = check_source(data)
    parts, _ = normalize_parts(get_modality(modality).read(root, data_options).parts)
    if parts.get("test"):
        return "test", parts["test"]
    return "all", [item for items in parts.values() for item in items]


def evaluate(model_dir: str | Path, data: str | Path, *, data_options: DataOptions | None = None,
             batch_size: int = 64, device: str = "auto") -> Evaluation:
    """Score the model of ``model_dir`` (written by ``autotransfer train``, or the ensemble
    folder of ``train --ensemble``: its weighted average of the members) on ``data``.

    Returns:
        An :class:`Evaluation`: accuracy and macro-F1 with 95% intervals, per-class precision,
        recall (with its Wilson interval), F1 and support, and the confusion matrix.

    Raises:
        ModelDirError: ``model_dir`` is not a model directory.
        EnsembleDirError: an ensemble folder with a damaged manifest or a member missing.
        DataError: the data cannot be read, or holds classes the model does not know.
    """
    import numpy as np

    from autotransfer.model.predict import predict
    from autotransfer.study.results.scores import confusion, macro_f1, per_class_scores

    meta = read_manifest(model_dir) if is_ensemble_dir(model_dir) else read_meta(model_dir)
    modality, classes = meta["modality"], list(meta["classes"])
    options = data_options or DataOptions()
    split, examples = labelled_examples(data, options, modality)
    unknown = sorted({label for _, label in examples} - set(classes))
    if unknown:
        raise DataError(f"{data}: classes the model does not know: {', '.join(unknown[:10])}; "
                        f"it knows {', '.join(classes[:20])}")
    samples = [sample for sample, _ in examples]
    if modality == "text":
        predictions = predict(model_dir, texts=samples, batch_size=batch_size, device=device)
    else:
        predictions = predict(model_dir, [str(s) for s in samples], batch_size=batch_size,
                              device=device)
    index = {c: i for i, c in enumerate(classes)}
    true, pred = [], []
    at = 0
    for p in predictions:  # in the inputs' order; an unreadable input has none
        while str(examples[at][0]) != p.input:
            at += 1
        true.append(index[examples[at][1]])
        pred.append(index[p.label])
        at += 1
    matrix = confusion(np.asarray(pred), np.asarray(true), len(classes))
    per_class = per_class_scores(matrix, classes)
    for i, name in enumerate(classes):
        support = per_class[name]["support"]
        per_class[name]["recall_ci95"] = (
            [round(v, 4) for v in wilson(matrix[i][i], support)] if support else None)
    return Evaluation(
        model=str(model_dir), data=str(data), split=split, examples=len(true),
        accuracy=round(float(np.trace(np.asarray(matrix))) / max(1, len(true)), 4),
        accuracy_ci95=score_ci95(matrix, "accuracy"), macro_f1=macro_f1(per_class),
        macro_f1_ci95=score_ci95(matrix, "macro_f1"), per_class=per_class, confusion=matrix)
