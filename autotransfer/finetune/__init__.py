"""Finetune: fine-tuning one backbone on one dataset.

Owns the ``Trainer`` and ``TransferModel`` (``trainer``) and what it returns (``results``),
what a training step is (``recipe``: the batches, the loss, the epoch-end steps) with the greedy
soup of a trial's checkpoints (``averaging``), the trainer's state at an epoch end
(``checkpoint``), freezing (``freezing``), optimiser parameter groups with layer-wise
learning-rate decay and the schedule (``optim``), metrics (``metrics``), device resolution and
memory (``device``), the frozen-prefix activation cache (``cache``) and its augmented views
(``cache_views``), the tuning methods (``methods``), what a trained model costs to run
(``cost``), a model's class probabilities packed to keep in a study (``predictions``) and
Caruana's ensemble selection over such probabilities with its cross-fitted score
(``ensemble``), a model as an ONNX graph in ONNX Runtime, int8 included (``onnx_graph``), whether a
trial has started training (``first_step``), byte sizes as users write them (``sizes``), and
the one schema of what a search stores in Optuna (``records``: ``TrialRecord``, ``TrialWriter``,
``StudyRecord``; here, below study and model, so that both read trials through it).

May import: ``autotransfer.data``, ``autotransfer.space``, ``autotransfer.contract``,
``autotransfer.errors`` and public libraries; never study, model or cli.

The user API ``autotransfer.train(best_yaml, out=...)`` that refits a model is
:func:`autotransfer.model.refit.train`.
"""
