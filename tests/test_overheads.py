"""What a search does around its trials costs little: the start-up heap is left out of the
garbage collector while trials run, the first dashboard note is saved from a thread, and the
transfer history's meta-features wait for the first completed trial. The seconds themselves
are measured by benchmarks/overhead.py, not here."""

import gc
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from autotransfer.data import load_data
from autotransfer.space.schema import parse_space
from autotransfer.study.results.dashboard import StudyNote
from autotransfer.study.store.storage import StudyLock, make_storage
from autotransfer.study.warm_start import DeferredRecorder
from autotransfer.study.workers import frozen_heap, run_trials

SPACE = {"backbones": ["packaged/mobilenetv2_100"], "epochs": 1, "pruner": "none"}


def test_trials_run_with_the_start_up_heap_frozen_and_it_is_put_back(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    before = gc.get_freeze_count()
    seen = []

    def objective(trial):
        seen.append(gc.get_freeze_count())
        return trial.suggest_float("x", 0.0, 1.0)

    run_trials(study, objective, lock=StudyLock(storage, "s"), trials=2, timeout=None)
    assert len(seen) == 2 and all(count > before for count in seen)
    assert gc.get_freeze_count() == before  # unfrozen again: collectable after the search
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a trial loop that fails")
    assert gc.get_freeze_count() == before


class _Trial:
    def __init__(self, number: int, state: TrialState) -> None:
        self.number, self.state = number, state


def test_the_history_registers_the_dataset_at_the_first_completed_trial():
    recorded, started = [], []

    def start():
        started.append(True)
        return lambda study, trial: recorded.append(trial.number)

    recorder = DeferredRecorder(start, lambda number, message: None)
    recorder(None, _Trial(0, TrialState.PRUNED))
    assert started == [] and recorded == []  # nothing to record yet: no meta-features
    recorder(None, _Trial(1, TrialState.COMPLETE))
    recorder(None, _Trial(2, TrialState.COMPLETE))
    assert started == [True] and recorded == [1, 2]


def test_a_history_that_cannot_start_is_a_note_never_an_error():
    said = []

    def start():
        raise OSError("disk full")

    recorder = DeferredRecorder(start, lambda number, message: said.append(message))
    recorder(None, _Trial(0, TrialState.COMPLETE))
    recorder(None, _Trial(1, TrialState.COMPLETE))  # tried once
    assert said == ["transfer history unavailable: OSError: disk full"]


def test_the_first_dashboard_note_is_saved_in_a_thread(class_folders, tmp_path):
    from optuna_dashboard import get_note

    storage = make_storage(f"sqlite:///{tmp_path}/n.db")
    study = optuna.create_study(study_name="n", storage=storage, direction="maximize")
    note = StudyNote(load_data(class_folders), parse_space(SPACE), space_file="space.yaml",
                     storage="sqlite:///n.db", trials=3)
    note.wait()  # no thread yet: returns at once
    note.save_soon(study, storage)
    note.wait()
    body = get_note(study)
    assert body.startswith("# autotransfer study") and "no completed trial yet" in body
    with StudyLock(storage, "n").held():  # the thread's lock was released
        note.save(study)


def test_a_note_that_cannot_be_saved_is_a_warning_at_wait(class_folders, tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/w.db")
    study = optuna.create_study(study_name="w", storage=storage, direction="maximize")
    note = StudyNote(load_data(class_folders), parse_space(SPACE), space_file=None,
                     storage="sqlite:///w.db", trials=None)
    note.body = lambda study: (_ for _ in ()).throw(ValueError("no body"))  # type: ignore
    note.save_soon(study, storage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        note.wait()
    assert [str(w.message) for w in caught] == [
        "dashboard note not saved: ValueError: no body"]


def test_a_note_put_off_until_training_is_saved_at_once_when_the_search_ends(class_folders,
                                                                             tmp_path):
    import time

    from optuna_dashboard import get_note

    from autotransfer.finetune.first_step import FIRST_STEP

    was_set = FIRST_STEP.is_set()
    FIRST_STEP.clear()  # no trial of this process has trained yet
    try:
        storage = make_storage(f"sqlite:///{tmp_path}/p.db")
        study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
        note = StudyNote(load_data(class_folders), parse_space(SPACE), space_file=None,
                         storage="sqlite:///p.db", trials=1)
        note.save_soon(study, storage, after_first_step=True)
        time.sleep(0.3)
        assert get_note(study) == ""  # put off: no training step yet
        started = time.monotonic()
        note.wait()  # the search ends without a trained step: saved now, not after PUT_OFF
        assert time.monotonic() - started < 30
        assert get_note(study).startswith("# autotransfer study")
    finally:
        if was_set:
            FIRST_STEP.set()


def test_a_note_still_put_off_when_the_time_budget_is_spent_is_cancelled_and_said(
        class_folders, tmp_path):
    """wait(cancel=True), as the final writes call it past a time budget: the thread that has
    not begun saves nothing and imports nothing (3 s for optuna-dashboard on a busy machine),
    and the warning says why."""
    from optuna_dashboard import get_note

    from autotransfer.finetune.first_step import FIRST_STEP

    was_set = FIRST_STEP.is_set()
    FIRST_STEP.clear()
    try:
        storage = make_storage(f"sqlite:///{tmp_path}/c.db")
        study = optuna.create_study(study_name="c", storage=storage, direction="maximize")
        note = StudyNote(load_data(class_folders), parse_space(SPACE), space_file=None,
                         storage="sqlite:///c.db", trials=1)
        saved = []
        note.save = saved.append  # type: ignore[method-assign]
        note.save_soon(study, storage, after_first_step=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            note.wait(cancel=True)
        assert saved == [] and get_note(study) == ""
        assert [str(w.message) for w in caught] == [
            "dashboard note not saved: the time budget was spent before the first training "
            "step (the next search of this study saves it)"]
    finally:
        if was_set:
            FIRST_STEP.set()


def test_the_note_looks_for_a_new_best_once_a_minute_and_ends_with_the_true_best(
        class_folders, tmp_path, monkeypatch):
    # The note's callback read every trial after each completed one to find the best (0.15 s a
    # trial on PostgreSQL, #40): now at most every NOTE_EVERY seconds, and the final state at
    # the end of the trial loop.
    from optuna_dashboard import get_note

    from autotransfer.study import selection
    from autotransfer.study.study import _callbacks

    storage = make_storage(f"sqlite:///{tmp_path}/b.db")
    study = optuna.create_study(study_name="b", storage=storage, direction="maximize")
    note = StudyNote(load_data(class_folders), parse_space(SPACE), space_file=None,
                     storage="sqlite:///b.db", trials=6)
    lock = StudyLock(storage, "b")
    reads = []
    trial_records = selection.trial_records
    monkeypatch.setattr(selection, "trial_records",
                        lambda *args: reads.append(1) or trial_records(*args))
    scores = iter([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # each trial a new best
    study.optimize(lambda trial: next(scores), n_trials=6, callbacks=_callbacks(None, note, lock))
    assert len(reads) == 2  # looked up once, and once more for the note it saved
    assert "trial 0:" in get_note(study)  # the first completed trial shows at once
    note.flush(study, lock)  # what the trial loop's caller does at its end
    body = get_note(study)
    assert "trial 5:" in body and "val 0.6000" in body and "(6 trials so far)" in body
