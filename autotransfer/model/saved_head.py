"""Rebuilding an exported model around its reloaded body, for a native format's ``load``.

Every format saves the linear head the same way (``save_linear_head``, in
:mod:`autotransfer.contract.formats`); :func:`model_with_saved_head` puts it back on a body the
zoo reloaded. Zoos reach it through :mod:`autotransfer.plugin`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotransfer.contract.backbone import Backbone
from autotransfer.contract.formats import load_linear_head


def model_with_saved_head(backbone: Backbone, meta: dict[str, Any], directory: Path) -> tuple:
    """Rebuild an exported model from its reloaded ``backbone``: configure it and its
    preprocessing with the trial's ``meta["params"]``, put a head for ``meta["classes"]`` on
    it and load the head :func:`~autotransfer.contract.formats.save_linear_head` wrote into
    ``directory``.

    Returns:
        ``(TransferModel, configured preprocess)``, what a format's ``load`` returns.
    """
    from autotransfer.finetune.trainer import TransferModel  # torch: only when a model loads

    preprocess = backbone.configured(meta["params"])
    model = TransferModel(backbone, len(meta["classes"]))
    load_linear_head(model.head[-1], directory)
    return model, preprocess
