"""Train: fine-tuning one backbone on one dataset.

Owns the ``Trainer`` and ``TransferModel`` (``trainer``), freezing (``freezing``), optimiser
parameter groups with layer-wise learning-rate decay and the schedule (``optim``), metrics
(``metrics``), device resolution and memory (``device``) and the frozen-prefix activation cache
(``cache``).

May import: ``autotransfer.data``, ``autotransfer.contract``, ``autotransfer.errors`` and public
libraries; never search, model or cli.

Calling the package, ``autotransfer.train(best_yaml, out=...)``, refits a model: it runs
:func:`autotransfer.model.refit.train` (the user API keeps its name; see
``autotransfer._callable``).
"""

from autotransfer._callable import make_callable

make_callable(__name__)
