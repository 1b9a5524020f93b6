"""Search: the Optuna study over backbones and hyperparameters.

Owns the study (``study``: prepare, run, write), a trial's objective (``objective``), pruners and
samplers (``pruners``), worker processes (``workers``), storage and its lock (``storage``), the
transferability pre-screen (``prescreen``), the transfer history and warm starts (``history``,
``warm_start``), kept best models (``artifacts``), the optuna-dashboard note (``dashboard``) and
the report (``report``).

May import: ``autotransfer.model``, ``autotransfer.train``, ``autotransfer.data``,
``autotransfer.contract``, ``autotransfer.errors`` and public libraries; never cli.

Calling the package, ``autotransfer.search(data, space, ...)``, runs
:func:`autotransfer.search.study.search` (the user API keeps its name; see
``autotransfer._callable``).
"""

from autotransfer._callable import make_callable

make_callable(__name__)
