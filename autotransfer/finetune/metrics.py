"""Classification scores of predictions against labels (the metrics themselves are entries of
:mod:`autotransfer.space.objectives`; the trainer computes them through
:func:`autotransfer.space.objectives.classification_scores`)."""

from __future__ import annotations

import torch

from autotransfer.space.objectives import accuracy, macro_f1


def classification_scores(preds: torch.Tensor, labels: torch.Tensor, n_classes: int):
    """``(accuracy, macro_f1)`` of ``preds`` against ``labels``, both ``(N,)`` int64 class
    indices in ``[0, n_classes)``; macro F1 averages over classes present in labels or preds
    (as scikit-learn's ``f1_score(average="macro")`` over those labels)."""
    y, p = labels.cpu().numpy(), preds.cpu().numpy()
    return accuracy(y, p), macro_f1(y, p)
