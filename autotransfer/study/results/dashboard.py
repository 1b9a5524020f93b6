"""The study's note for optuna-dashboard: what the search is, in markdown."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import threading
import time

from autotransfer.data import LabelledData
from autotransfer.finetune.first_step import FIRST_STEP
from autotransfer.space.schema import SearchSpace
from autotransfer.study.results.report import best_trial
from autotransfer.study.selection import front_of, least_violating, rule_of
from autotransfer.study.store.storage import StudyLock
from autotransfer.study.workers import tally


class StudyNote:
    """The study's note in optuna-dashboard: data, space, storage (masked) and the best so far."""

    def __init__(self, dataset: LabelledData, space: SearchSpace, *, space_file: str | None,
                 storage: str, trials: int | None) -> None:
        import yaml

        self._thread, self._problem = None, None  # save_soon's thread, and what it hit
        # update(): when the best was last looked up, the number of the best trial the note
        # shows (-1: none saved yet; None: none feasible), whether a trial completed since
        self._looked, self._stale = float("-inf"), False
        self._shown: int | None = -1
        self._go = threading.Event()  # set by wait(): the thread waits no longer
        self._cancel = threading.Event()  # set by wait(cancel=True): nor does it start
        sizes = ", ".join(f"{len(s)} {k}" for k, s in dataset.splits().items())
        objectives = space.objectives or [space.metric]
        names = ", ".join(f"`{b.label}`" for b in space.backbones)
        self.head = "\n".join([
            "# autotransfer study",
            "",
            ("Best validation " if len(objectives) == 1 else "Pareto front of ")
            + f"{', '.join(objectives)} over {len(space.backbones)} backbone(s) "
            f"({names}), {space.epochs} epoch(s) a trial, on "
            f"{len(dataset.classes)} classes of `{dataset.source.name}`.",
            "",
            f"- **data**: `{dataset.source}` ({len(dataset.classes)} classes; {sizes})",
            f"- **storage**: `{storage}`",
            f"- **trials**: {trials if trials is not None else 'until timeout'}",
            "",
            "## Search space" + (f" (`{space_file}`)" if space_file else ""),
            "",
            "```yaml",
            # as written: the defaults it leaves out are not spelt out
            yaml.safe_dump(space.model_dump(mode="json", exclude_defaults=True),
                           sort_keys=False).rstrip(),
            "```",
        ])

    def body(self, study) -> str:
        done = tally(study)
        lines = [self.head, "", "## Best so far", ""]
        best = best_trial(study)
        if best is None:
            lines.append(_no_best(study))
        else:
            test = best.test_score
            lines.append(
                f"trial {best.number}: `{best.backbone or '?'}` val {best.value:.4f}"
                + (f", test {test:.4f}" if test is not None else "")
                + f" ({done.counted} trials so far)"
            )
            lines += ["", "```yaml", _yaml(best.params or best.sampled), "```"]
            lines += _front_line(study)
        return "\n".join(lines) + "\n"

    def save(self, study) -> None:
        from optuna_dashboard import save_note

        save_note(study, self.body(study))

    def update(self, study, trial, lock: StudyLock) -> None:
        """After each finished trial (a trial-loop callback): save the note when the best
        trial changed, looking the best up (a read of every trial) at most every
        :data:`NOTE_EVERY` seconds, the first completed trial at once; :meth:`flush` writes the
        final state. A new best shows within ``NOTE_EVERY`` s: looking it up after every trial
        took 0.15 s a trial on PostgreSQL (#40)."""
        from optuna.trial import TrialState

        if trial.state != TrialState.COMPLETE:
            return
        self._stale = True
        if time.monotonic() - self._looked >= NOTE_EVERY:
            self._save_if_changed(study, lock, always=False)

    def flush(self, study, lock: StudyLock) -> None:
        """Save the note if a trial completed since :meth:`update` last saved it (the final
        state, before the results are written)."""
        if self._stale:
            self._save_if_changed(study, lock, always=True)

    def _save_if_changed(self, study, lock: StudyLock, *, always: bool) -> None:
        self._looked = time.monotonic()
        best = best_trial(study)
        shown = None if best is None else best.number
        # a new best, or completed trials and none within the bounds: the note says which
        if always or shown is None or shown != self._shown:
            self.wait()  # the first note first (its thread takes the lock)
            with lock.held():
                self.save(study)
            self._shown, self._stale = shown, False

    def save_soon(self, study, storage, *, after_first_step: bool = False) -> None:
        """Save the note from a thread, then load the modules that the final writes use
        (:data:`PRELOAD`), while the first trial trains: optuna-dashboard alone imports
        scikit-learn, SciPy and pandas (1.2 s of the start-up of a 2-core machine; torch
        releases the GIL while it computes). :meth:`wait` joins it: call it before a later
        :meth:`save` and before the final writes, never while holding the study lock (the
        thread takes it). ``after_first_step`` (the trials run in this process): the thread
        starts its work once a trial has done its first training step
        (:data:`autotransfer.finetune.first_step.FIRST_STEP`, at most :data:`PUT_OFF` s)."""
        self._thread = threading.Thread(target=self._save_then_load,
                                        args=(study, storage, after_first_step),
                                        name="autotransfer-note", daemon=True)
        self._thread.start()
        atexit.register(self.wait)  # also when the search ends on an error

    def _save_then_load(self, study, storage, after_first_step: bool) -> None:
        end = time.monotonic() + PUT_OFF
        while (after_first_step and not FIRST_STEP.is_set() and time.monotonic() < end
               and not self._go.wait(0.1)):  # wait() says go: the search ends
            pass
        if self._cancel.is_set():  # the time budget is spent: no imports of seconds now
            self._problem = ("dashboard note not saved: the time budget was spent before the "
                             "first training step (the next search of this study saves it)")
            return
        try:
            importlib.import_module("optuna_dashboard")  # before the lock: others wait on it
            with StudyLock(storage, study.study_name).held():  # its own: locks are per object
                self.save(study)
        except Exception as exc:  # the note is a help; a failure is a warning at wait()
            self._problem = f"dashboard note not saved: {type(exc).__name__}: {exc}"
        for name in PRELOAD:
            with contextlib.suppress(Exception):  # the report says what it cannot draw
                importlib.import_module(name)

    def wait(self, *, cancel: bool = False) -> None:
        """Join :meth:`save_soon`'s thread (at once when there is none). ``cancel``: a thread
        still waiting for the first training step saves nothing and loads nothing (its imports
        take seconds: 3 s for optuna-dashboard on a busy 2-core machine), and the warning says
        so; used when a time budget is spent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            if cancel:
                self._cancel.set()
            self._go.set()
            thread.join()
        problem, self._problem = self._problem, None
        if problem:
            import warnings

            warnings.warn(problem, stacklevel=2)


#: Seconds between two looks for a new best trial in :meth:`StudyNote.update`.
NOTE_EVERY = 60.0
#: Seconds the note's thread waits at most for the first training step.
PUT_OFF = 60.0
#: What the final writes import: the report's plotting modules
#: (``autotransfer.study.results.report``) and SciPy's statistics for the scores' intervals
#: (``autotransfer.study.results.intervals``; 0.5-1.4 s).
PRELOAD = ("optuna.visualization", "optuna.visualization.matplotlib", "plotly.graph_objects",
           "matplotlib.pyplot", "scipy.stats")


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False).rstrip()


def _no_best(study) -> str:
    """The note's line when no trial is the best: none completed yet, or none of those that
    completed is within the space's constraints (then the least violating is named)."""
    from optuna.trial import TrialState

    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if not completed:
        return "no completed trial yet"
    closest = least_violating(study)
    return (f"no trial within the constraints: {completed} completed, none meets them"
            + (f" ({closest.removeprefix('no trial meets the constraints; ')})"
               if closest else ""))


def _front_line(study) -> list[str]:
    """The Pareto front of a multi-objective study (its trials, by the pick rule)."""
    rule = rule_of(study)
    if not rule.multi_objective:
        return []
    members = ", ".join(f"{r.number}" for r in front_of(study))
    return ["", f"Pareto front on {', '.join(rule.objectives)}: trials {members} (best: the "
                f"first by {rule.pick or rule.objectives[0]})"]
