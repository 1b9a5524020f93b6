"""Journal storage (``journal:///path``): Optuna's JournalStorage on one file, with the same
guarantees as an SQL database: the exact total across worker processes, a silent worker's trial
failed and retried by its heartbeat, and SIGTERM leaving nothing RUNNING."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from autotransfer.errors import StorageError
from autotransfer.study.store.lost_trials import fail_lost_trials
from autotransfer.study.store.storage import StudyLock, make_storage, mask_url
from autotransfer.study.workers import tally
from conftest import write_images

SPACE = """
backbones: [{id: timm/test_efficientnet, pretrained: false}]
epochs: EPOCHS
pruner: none
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  image_size: 32
  batch_size: 8
"""


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from autotransfer.cli import main; main()", *args]


def _setup(tmp_path, epochs: int) -> list[str]:
    for name, seed in (("circle", 1), ("square", 2)):
        write_images(tmp_path / "data" / name, 8, seed=seed)
    (tmp_path / "space.yaml").write_text(SPACE.replace("EPOCHS", str(epochs)))
    return ["search", "data", "--space", "space.yaml", "--storage",
            f"journal://{tmp_path / 'study.log'}", "--study", "s", "--out", "out"]


def _study(tmp_path):
    storage = make_storage(f"journal://{tmp_path / 'study.log'}", must_exist=True)
    return optuna.load_study(study_name="s", storage=storage)


def test_journal_url_opens_masks_and_says_what_is_wrong(tmp_path):
    url = f"journal://{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="s", storage=make_storage(url))
    study.enqueue_trial({"x": 1.0})
    again = optuna.load_study(study_name="s", storage=make_storage(url, must_exist=True))
    assert len(again.trials) == 1  # the file holds the study
    assert mask_url(url) == url
    assert (tmp_path / "study.log").is_file()  # journal:///abs/path names /abs/path
    with pytest.raises(StorageError, match="folder .*nowhere does not exist"):
        make_storage(f"journal://{tmp_path / 'nowhere' / 'study.log'}")
    with pytest.raises(StorageError, match="no such journal file"):
        make_storage(f"journal://{tmp_path / 'missing.log'}", must_exist=True)
    (tmp_path / "other.log").write_text("not a journal\n")
    with pytest.raises(StorageError, match="other.log is not an Optuna journal file"):
        make_storage(f"journal://{tmp_path / 'other.log'}")


def test_journal_study_lock_excludes_other_processes(tmp_path):
    url = f"journal://{tmp_path / 'lock.log'}"
    lock = StudyLock(make_storage(url), "s")
    probe = (
        "import sys, threading\n"
        "from autotransfer.study.store.storage import StudyLock, make_storage\n"
        f"lock = StudyLock(make_storage({url!r}), 's')\n"
        "t = threading.Thread(target=lock.acquire, daemon=True); t.start(); t.join(2)\n"
        "sys.exit(3 if t.is_alive() else 0)\n"
    )
    with lock.held():
        blocked = subprocess.run([sys.executable, "-c", probe], timeout=60)
    assert blocked.returncode == 3
    assert subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_journal_heartbeat_fails_and_retries_a_silent_trial(tmp_path):
    storage = make_storage(f"journal://{tmp_path / 'study.log'}", heartbeat_interval=1)
    study = optuna.create_study(study_name="s", storage=storage)
    silent, beating = study.ask(), study.ask()
    for trial in (silent, beating):
        trial.set_user_attr("worker", "gpu-node-7:4242")  # another machine: only the heartbeat
    storage.record_heartbeat(silent._trial_id)
    time.sleep(3.5)  # past the grace period (3 intervals of 1 s)
    storage.record_heartbeat(beating._trial_id)
    with pytest.warns(RuntimeWarning, match="trial 0 was left RUNNING: no heartbeat from its "
                                            "worker gpu-node-7:4242 for over 3 s; marked failed"):
        assert fail_lost_trials(study) == [0]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert trials[2].system_attrs["failed_trial"] == 0  # Optuna's retry callback queued it
    storage.record_heartbeat(silent._trial_id)  # a late beat of a finished trial is no error


@pytest.mark.slow
def test_three_workers_on_one_journal_file_reach_the_exact_total(tmp_path):
    args = _setup(tmp_path, epochs=1)
    run = subprocess.run(_command(*args, "--trials", "7", "--workers", "3"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    study = _study(tmp_path)
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker_pid"] for t in trials}) >= 2  # workers shared the study
    assert tally(study).counted == 7


@pytest.mark.slow
def test_sigterm_to_journal_workers_leaves_nothing_running(tmp_path):
    # SIGTERM to the process group (Slurm's and Kubernetes' preemption), then the same command
    # again (the requeued job): the study completes at exactly --trials, none RUNNING.
    args = [*_setup(tmp_path, epochs=40), "--trials", "4", "--workers", "2"]
    process = subprocess.Popen(_command(*args), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    running = []
    while time.monotonic() < deadline and not running:
        if (tmp_path / "study.log").is_file():
            with contextlib.suppress(KeyError):  # the study is not created yet
                running = [t for t in _study(tmp_path).get_trials(states=(TrialState.RUNNING,))
                           if "epoch_2" in t.user_attrs]
        time.sleep(0.5)
    assert running, "no trial reached its second epoch"
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    trials = _study(tmp_path).get_trials()
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials), err
    assert {t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL} == {
        "interrupted by SIGTERM"}
    rerun = subprocess.run(_command(*args), cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    study = _study(tmp_path)
    states = [t.state for t in study.get_trials()]
    assert TrialState.RUNNING not in states and tally(study).counted == 4
    assert states.count(TrialState.COMPLETE) == 4
