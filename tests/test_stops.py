"""Every way a search is stopped: SIGTERM and SIGHUP like Ctrl-C (the running trial failed with
a reason, results written, exit 128 + signal), in the main process and in worker processes;
a resumed study fails a trial left RUNNING by a dead process at once and says so."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autotransfer.study.store.lost_trials import fail_lost_trials, fail_stopped_trials, process_gone
from autotransfer.study.store.storage import make_storage
from conftest import write_images

# Tiny images and many short epochs: a trial lasts a few seconds, a stop lands mid-trial.
SPACE = """
backbones: [{id: timm/test_efficientnet, pretrained: false}]
epochs: EPOCHS
pruner: none
params: {image_size: 32, batch_size: 8}
"""


def _setup(tmp_path: Path, epochs: int) -> list[str]:
    for name, seed in (("circle", 1), ("square", 2)):
        write_images(tmp_path / "data" / name, 8, seed=seed)
    (tmp_path / "space.yaml").write_text(SPACE.replace("EPOCHS", str(epochs)))
    return ["search", "data", "--space", "space.yaml", "--storage", "sqlite:///s.db",
            "--study", "s", "--out", "out"]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from autotransfer.cli import main; main()", *args]


def _trials(tmp_path: Path):
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}").trials


def _described(trials) -> list[tuple]:
    return [(t.number, t.state.name, t.user_attrs.get("fail_reason"),
             t.user_attrs.get("worker_pid")) for t in trials]


def _start_and_wait(args, tmp_path, n_epoch_lines: int, **popen):
    """Start the search; return it once trial ``n`` (the second "epoch 1/" line) runs."""
    process = subprocess.Popen(_command(*args), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, **popen)
    seen = 0
    for line in process.stdout:
        if "epoch 2/" in line:
            seen += 1
            if seen == n_epoch_lines:
                break
    return process


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_search_like_ctrl_c(name, tmp_path):
    signum = getattr(signal, name)
    args = _setup(tmp_path, epochs=40)  # trial 0 completes, trial 1 is stopped mid-way
    process = _start_and_wait([*args, "--trials", "3"], tmp_path, 2)  # in trial 1
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert f"stopped by {name}; the study is saved and resumes with the same command" in err
    first, second = _trials(tmp_path)
    assert first.state == TrialState.COMPLETE and second.state == TrialState.FAIL
    assert second.user_attrs["fail_reason"] == f"interrupted by {name}"
    assert (tmp_path / "out" / "leaderboard.csv").is_file()
    assert (tmp_path / "out" / "best.yaml").is_file()  # trial 0 had completed
    if name != "SIGTERM":  # the rerun is the same whatever stopped the first run
        return
    rerun = subprocess.run(_command(*args, "--trials", "3"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    states = [t.state for t in _trials(tmp_path)]
    assert states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING not in states


def test_sigterm_to_the_process_group_stops_every_worker(tmp_path):
    """What ``docker stop``, Slurm and Kubernetes do: SIGTERM to the search and its workers."""
    args = _setup(tmp_path, epochs=150)
    process = _start_and_wait([*args, "--trials", "20", "--workers", "2"], tmp_path, 2,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # both workers mid-trial
        running = [t for t in _trials(tmp_path) if t.state == TrialState.RUNNING
                   and "epoch_2" in t.user_attrs]
        if len(running) == 2:
            break
        time.sleep(0.2)
    pids = {t.user_attrs["worker_pid"] for t in running}
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "stopped by SIGTERM" in err
    for pid in pids:
        assert process_gone(f"{socket.gethostname()}:{pid}", pid)
    trials = _trials(tmp_path)
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials), (
        _described(trials), err)
    reasons = {t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
    assert reasons == {"interrupted by SIGTERM"}, (_described(trials), err)
    assert (tmp_path / "out" / "leaderboard.csv").is_file()


WORKER_STOPPED_TWICE = """
import os, signal, sys, time
from types import SimpleNamespace
from autotransfer.study.workers import worker_main

def target(spec):
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # the process group's SIGTERM
        time.sleep(5)
    except KeyboardInterrupt:  # the trial records its failure; meanwhile the search's
        os.kill(os.getpid(), signal.SIGTERM)  # terminate() sends a second SIGTERM
        time.sleep(0.5)
        print("failure recorded", flush=True)
        raise

worker_main(target, SimpleNamespace(threads=1, progress=None))
"""


def test_a_second_stop_signal_does_not_interrupt_a_worker_recording_its_trial():
    """``docker stop`` on the group, then the search's own terminate(): two SIGTERMs."""
    done = subprocess.run([sys.executable, "-c", WORKER_STOPPED_TWICE], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout == "failure recorded\n", done.stderr
    assert done.returncode == 130, done.stderr


def test_after_a_stop_the_trials_of_gone_workers_fail_as_interrupted(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=make_storage(url))
    gone, alive = study.ask(), study.ask()
    pid = _dead_pid()
    for trial, worker_pid in ((gone, pid), (alive, os.getppid())):
        trial.set_user_attr("worker", f"{socket.gethostname()}:{worker_pid}")
        trial.set_user_attr("worker_pid", worker_pid)
    assert fail_stopped_trials(study, "interrupted by SIGTERM") == [gone.number]
    first, second = study.get_trials()
    assert first.state == TrialState.FAIL and second.state == TrialState.RUNNING
    assert first.user_attrs["fail_reason"] == "interrupted by SIGTERM"
    assert first.user_attrs["interrupted"] is True


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_trial_left_running_by_a_dead_process_is_failed_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url, heartbeat_interval=20)
    study = optuna.create_study(study_name="s", storage=storage)
    dead, alive = study.ask(), study.ask()
    pid = _dead_pid()
    dead.set_user_attr("worker", f"{socket.gethostname()}:{pid}")
    dead.set_user_attr("worker_pid", pid)
    alive.set_user_attr("worker", f"{socket.gethostname()}:{os.getppid()}")
    alive.set_user_attr("worker_pid", os.getppid())
    with pytest.warns(RuntimeWarning) as caught:
        assert fail_lost_trials(study) == [dead.number]
    assert str(caught[0].message) == (
        f"trial 0 was left RUNNING: its worker {socket.gethostname()}:{pid} is no longer "
        "running; marked failed; retried unless it was already retried 2 times")
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == (
        f"lost: its worker {socket.gethostname()}:{pid} is no longer running")
    assert trials[1].state == TrialState.RUNNING  # its process lives
    assert trials[2].state == TrialState.WAITING  # the retry Optuna's callback queued
    assert trials[2].system_attrs["failed_trial"] == 0


def test_a_resumed_search_after_sigkill_does_not_wait_for_the_heartbeat(tmp_path):
    args = _setup(tmp_path, epochs=40)
    process = _start_and_wait([*args, "--trials", "3"], tmp_path, 2)
    process.kill()  # no handler runs: trial 1 stays RUNNING
    process.communicate(timeout=60)
    assert [t.state for t in _trials(tmp_path)][1] == TrialState.RUNNING
    started = time.monotonic()
    rerun = subprocess.run(_command(*args, "--trials", "3"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "warning: trial 1 was left RUNNING: its worker " in rerun.stderr
    assert "is no longer running; marked failed" in rerun.stderr
    trials = _trials(tmp_path)
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["fail_reason"].startswith("lost: its worker")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["fail_reason"] == ""
    # the heartbeat's grace is 60 s; failing at once means the rerun's first trial starts now
    first = min(t.datetime_start for t in trials[2:]).timestamp()
    assert first - (time.time() - (time.monotonic() - started)) < 40


def test_waiting_for_another_machines_trial_is_said_once(tmp_path):
    from autotransfer.study.store.lost_trials import say_waiting

    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=20)
    study = optuna.create_study(study_name="s", storage=storage)
    remote, local = study.ask(), study.ask()
    remote.set_user_attr("worker", "gpu-node-7:4242")
    local.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    said: set[int] = set()
    with pytest.warns(RuntimeWarning) as caught:
        say_waiting(study, said)
        say_waiting(study, said)
    assert [str(w.message) for w in caught if "waiting" in str(w.message)] == [
        "waiting for trial 0, running on gpu-node-7:4242; it is failed and retried after 60 s "
        "without a heartbeat"]


def test_a_trial_failed_by_its_heartbeat_records_why(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.set_user_attr("worker", "gpu-node-7:4242")  # another machine: only the heartbeat
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(4.5)  # the grace period (3 intervals of 1 s), in whole seconds of SQLite time
    with pytest.warns(RuntimeWarning, match="trial 0 was left RUNNING: no heartbeat from its "
                                            "worker gpu-node-7:4242 for over 3 s; marked failed"):
        assert fail_lost_trials(study) == [0]
    assert study.trials[0].user_attrs["fail_reason"] == (
        "lost: no heartbeat from its worker gpu-node-7:4242 for over 3 s")
