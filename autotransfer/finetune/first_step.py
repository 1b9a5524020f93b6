"""Whether a trial of this process has started training (a leaf: no torch import).

:class:`autotransfer.finetune.trainer.Trainer` sets :data:`FIRST_STEP` once its first training
step is done. Work a search can put off (the dashboard note's thread,
:meth:`autotransfer.study.results.dashboard.StudyNote.save_soon`) waits for it, so that it does not
compete with the first trial's start (imports, model build, encoding) for the interpreter:
while a trial trains, torch computes without the GIL and such a thread runs on the idle core.
"""

from __future__ import annotations

import threading

FIRST_STEP = threading.Event()
