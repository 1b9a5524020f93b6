"""Classification scores of predictions against labels."""

from __future__ import annotations

import torch


def classification_scores(preds: torch.Tensor, labels: torch.Tensor, n_classes: int):
    """``(accuracy, macro_f1)`` of ``preds`` against ``labels``, both ``(N,)`` int64 class
    indices in ``[0, n_classes)``; macro F1 averages over classes present in labels or preds
    (as scikit-learn's ``f1_score(average="macro")`` over those labels)."""
    confusion = torch.bincount(labels * n_classes + preds, minlength=n_classes**2)
    confusion = confusion.view(n_classes, n_classes).double()
    tp = confusion.diag()
    support, predicted = confusion.sum(1), confusion.sum(0)
    present = (support + predicted) > 0
    f1 = 2 * tp / (support + predicted).clamp(min=1)
    accuracy = float(tp.sum() / confusion.sum().clamp(min=1))
    return accuracy, float(f1[present].mean()) if present.any() else 0.0
