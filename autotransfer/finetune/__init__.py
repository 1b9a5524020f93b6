"""Finetune: fine-tuning one backbone on one dataset.

Owns the ``Trainer`` and ``TransferModel`` (``trainer``), freezing (``freezing``), optimiser
parameter groups with layer-wise learning-rate decay and the schedule (``optim``), metrics
(``metrics``), device resolution and memory (``device``) and the frozen-prefix activation cache
(``cache``).

May import: ``autotransfer.data``, ``autotransfer.contract``, ``autotransfer.errors`` and public
libraries; never study, model or cli.

The user API ``autotransfer.train(best_yaml, out=...)`` that refits a model is
:func:`autotransfer.model.refit.train`.
"""
