"""Study: the Optuna study over backbones and hyperparameters.

Owns the study (``study``: prepare, run, write), a trial's objective (``objective``), pruners and
samplers (``pruners``), worker processes (``workers``), storage and its lock (``storage``), the
transferability pre-screen (``prescreen``), the transfer history and warm starts (``history``,
``warm_start``), kept best models (``artifacts``), the optuna-dashboard note (``dashboard``) and
the report (``report``).

May import: ``autotransfer.model``, ``autotransfer.finetune``, ``autotransfer.data``,
``autotransfer.contract``, ``autotransfer.errors`` and public libraries; never cli.

The user API ``autotransfer.search(data, space, ...)`` is :func:`autotransfer.study.study.search`
(the package is named like optuna's ``optuna/study/``, so that the function keeps its name).
"""
