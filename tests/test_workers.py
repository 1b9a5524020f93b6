"""Many workers, one study: worker processes on SQLite and on a real PostgreSQL server, a worker
killed with SIGKILL in the middle of a trial, the exact study-wide total, and masked passwords."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from autotransfer.finetune.records import TrialRecord
from autotransfer.study.results.intervals import val_examples
from autotransfer.study.store.storage import StudyLock, make_storage
from autotransfer.study.workers import cpu_threads, tally
from conftest import cli_error as _error

# A tiny random-init timm model: real training, no hub, a couple of seconds per trial.
SPACE = """
backbones:
  - {id: timm/test_efficientnet, pretrained: false}
epochs: EPOCHS
pruner: none
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  batch_size: 32
  image_size: SIZE
"""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _space(folder: Path, epochs: int = 1, size: int = 32) -> Path:
    path = folder / "space.yaml"
    path.write_text(SPACE.replace("EPOCHS", str(epochs)).replace("SIZE", str(size)))
    return path


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from autotransfer.cli import main; main()", *args]


def _storage(kind: str, work: Path, request) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work / 'study.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
@pytest.mark.xdist_group("postgres")
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_on_one_machine_reach_the_exact_total(kind, fashion_mnist, tmp_path, request):
    # --workers 2 starts two processes that share the study; --trials counts the study's total.
    storage = _storage(kind, tmp_path, request)
    study_name = f"two-{kind}"
    run = subprocess.run(
        _command("search", str(fashion_mnist), "--space", str(_space(tmp_path)),
                 "--trials", "7", "--workers", "2", "--storage", storage, "--study", study_name,
                 "--out", str(tmp_path / "out")),
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    pids = {t.user_attrs["worker_pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers ran trials
    assert study.user_attrs["workers_joined"] == 2
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    # best.yaml describes the picked trial: the top score, or a cheaper one statistically tied
    # with it (within one validation example; autotransfer.study.results.intervals.RULE)
    picked = study.trials[best["source"]["trial"]]
    assert best["val_score"] == pytest.approx(picked.value)
    n_val = val_examples(TrialRecord.from_frozen(picked))
    assert picked.value >= study.best_value - 1 / n_val - 1e-9
    assert "Leaderboard" in run.stdout and "w0 trial #" in run.stdout and "w1 " in run.stdout
    # the password of the PostgreSQL URL shows nowhere: output, best.yaml, the dashboard's note
    from optuna_dashboard._note import get_note_from_system_attrs

    note = get_note_from_system_attrs(
        study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert "## Best so far" in note and "timm/test_efficientnet" in note
    for text in (run.stdout, run.stderr, yaml.safe_dump(best), note, str(study.user_attrs)):
        assert "s3cret" not in text
    if kind == "postgresql":
        assert best["source"]["storage"] == storage.replace("s3cret", "***")
        assert "at:***@127.0.0.1" in run.stdout and "at:***@127.0.0.1" in note


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.slow
@pytest.mark.xdist_group("postgres")
def test_a_killed_worker_loses_nothing(fashion_mnist, tmp_path, postgres_url):
    # Two workers (as on two machines) share a PostgreSQL study; one is SIGKILLed in the middle
    # of a trial. Its trial turns FAIL when its heartbeat stops, a retry takes its place, and the
    # survivor finishes the study: every trial accounted for, none lost.
    total = 6
    args = ("search", str(fashion_mnist), "--space", str(_space(tmp_path, epochs=3)),
            "--trials", str(total), "--heartbeat", "1", "--storage", postgres_url,
            "--study", "kill")
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # two "machines" share this one's cores
    workers = [
        subprocess.Popen(_command(*args, "--out", str(tmp_path / f"out{i}")), cwd=tmp_path,
                         stdout=logs[i], stderr=subprocess.STDOUT, env=one_thread)
        for i in range(2)
    ]
    victim, survivor = workers
    try:
        storage = make_storage(postgres_url)

        def victim_mid_trial():
            try:
                study = optuna.load_study(study_name="kill", storage=storage)
            except KeyError:  # not created yet
                return None
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                # one epoch of three reported: the kill lands in the middle of this trial
                if t.user_attrs.get("worker_pid") == victim.pid and "epoch_1" in t.user_attrs:
                    return t.number
            return None

        killed = _wait_for(victim_mid_trial, 300, "a running trial of the first worker")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert survivor.wait(timeout=600) == 0, (tmp_path / "worker1.log").read_text()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for log in logs:
            log.close()
    assert victim.returncode == -signal.SIGKILL

    study = optuna.load_study(study_name="kill", storage=postgres_url)
    trials = study.get_trials()
    by_number = {t.number: t for t in trials}
    assert all(t.state in FINISHED for t in trials)  # nothing left running or waiting
    assert by_number[killed].state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.system_attrs["failed_trial"] == killed  # RetryHeartbeatStaleTrialCallback
    assert retry.params == by_number[killed].params
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["worker_pid"] == survivor.pid
    counts = tally(study)
    assert counts.counted == total and counts.retried == 1 and len(trials) == total + 1
    lost = total - sum(t.state in FINISHED for t in trials if t.number != killed)
    print(f"\nkill test: {sum(t.state == TrialState.COMPLETE for t in trials)} finished, "
          f"{sum(t.state == TrialState.FAIL for t in trials)} failed, {counts.retried} retried, "
          f"{lost} lost")
    assert lost == 0
    best = yaml.safe_load((tmp_path / "out1" / "best.yaml").read_text())
    assert best["val_score"] == pytest.approx(study.best_value)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_tally_counts_a_retry_in_place_of_the_trial_it_retries(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    failed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(failed, state=TrialState.FAIL)
    callback = storage.get_heartbeat_stale_trial_callback()
    callback(study, study.trials[failed.number])  # what a dead worker's trial goes through
    counts = tally(study)
    assert (counts.counted, counts.waiting, counts.retried) == (3, 1, 1)
    assert len(study.trials) == 4


@pytest.mark.xdist_group("postgres")
def test_study_lock_excludes_other_processes(postgres_url, tmp_path):
    # While this process holds the lock, another process cannot take it.
    for url in (postgres_url, f"sqlite:///{tmp_path / 'lock.db'}"):
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
        assert blocked.returncode == 3, url
        free = subprocess.run([sys.executable, "-c", probe], timeout=60)
        assert free.returncode == 0, url


def test_threads_split_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert cpu_threads(1) == cores and cpu_threads(cores) == 1
    assert cpu_threads(4 * cores) == 1


def test_bad_worker_count_and_unreachable_server(capsys, class_folders, tmp_path):
    space = str(_space(tmp_path))
    assert "--workers must be >= 1, got 0" in _error(
        capsys, "search", str(class_folders), "--space", space, "--trials", "1",
        "--workers", "0")
    err = _error(capsys, "search", str(class_folders), "--space", space, "--trials", "1",
                 "--storage", "postgresql+psycopg://at:s3cret@127.0.0.1:1/at")
    assert err.startswith("error: cannot open storage postgresql+psycopg://at:***@127.0.0.1:1/at")
    assert "s3cret" not in err


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_keeps_what_finished(fashion_mnist, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    parent = subprocess.Popen(
        _command("search", str(fashion_mnist), "--space", str(_space(tmp_path, epochs=40)),
                 "--trials", "50", "--workers", "2", "--storage", storage, "--study", "c"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        def both_workers_mid_trial():
            try:
                study = optuna.load_study(study_name="c", storage=storage)
            except KeyError:
                return None
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            # many epochs to go (a loaded machine may be slow to pass the stop on): a stopped
            # worker ends its trial at the next epoch at the latest
            pids = {t.user_attrs.get("worker_pid") for t in running
                    if "epoch_1" in t.user_attrs and "epoch_20" not in t.user_attrs}
            return pids if len(pids) == 2 else None

        pids = _wait_for(both_workers_mid_trial, 300, "both workers in the middle of a trial")
        parent.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output = parent.communicate(timeout=120)[0]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 130, output
    assert "interrupted; the study is saved" in output
    for pid in pids:  # the workers are gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    trials = optuna.load_study(study_name="c", storage=storage).get_trials()
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2
    assert all(t.user_attrs["fail_reason"].startswith("interrupted") for t in failed)
    assert tally(optuna.load_study(study_name="c", storage=storage)).counted == len(trials) - 2


@pytest.mark.xdist_group("postgres")
def test_a_worker_keeps_one_server_connection_open_between_trials(postgres_url):
    # The trial loop, its heartbeat thread and the study lock each need a connection at times;
    # SQLAlchemy's default pool kept every one of them open for the worker's life (3 per
    # worker at the server), and 32 workers held ~96. Now one stays open per worker.
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from autotransfer.study.workers import run_trials

    url = f"{postgres_url}?application_name=pool-kept"
    storage = make_storage(url, heartbeat_interval=1)
    study = optuna.create_study(study_name="pool-kept", storage=storage)

    def objective(trial):
        time.sleep(1.5)  # the heartbeat thread writes while the trial runs
        return trial.suggest_float("x", 0, 1)

    run_trials(study, objective, lock=StudyLock(storage, study.study_name), trials=3,
               timeout=None)
    counter = create_engine(postgres_url, poolclass=NullPool)
    with counter.connect() as connection:
        kept = connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pool-kept'"
        )).scalar()
    counter.dispose()
    storage.engine.dispose()
    assert tally(study).counted == 3
    assert kept == 1


@pytest.mark.xdist_group("postgres")
def test_a_worker_opens_no_connection_past_its_one_for_the_lock_heartbeats_or_the_wait(
        postgres_url):
    # The study lock held a second connection while the storage calls under it opened a third
    # (the pool then closed one of the two): a new server connection every locked section and
    # every poll of the end-of-study wait, 1.6 per worker at the server's peak (#40). Now the
    # lock lives on the worker's one connection, which the heartbeat thread shares.
    import threading

    from sqlalchemy import event

    from autotransfer.study.workers import run_trials

    storage = make_storage(postgres_url, heartbeat_interval=1)
    study = optuna.create_study(study_name="one-connection", storage=storage)
    opened = []
    event.listen(storage.engine, "connect", lambda *_: opened.append(1))
    # another machine's trial, still running when this worker has run its own share
    elsewhere = optuna.load_study(study_name="one-connection", storage=make_storage(postgres_url))
    theirs = elsewhere.ask()
    lock = StudyLock(storage, study.study_name)

    def objective(trial):
        time.sleep(1.2)  # the heartbeat thread writes while the trial runs
        return trial.suggest_float("x", 0, 1)

    loop = threading.Thread(target=run_trials, args=(study, objective),
                            kwargs={"lock": lock, "trials": 3, "timeout": 60, "poll": 0.05},
                            daemon=True)
    loop.start()
    _wait_for(lambda: len(elsewhere.get_trials(states=(TrialState.COMPLETE,))) == 2, 60,
              "the worker's two trials")
    time.sleep(0.5)  # it waits for the other trial, polling
    # two more threads of the worker's process (as the note's) take their turns
    with StudyLock(storage, study.study_name).held():
        second = StudyLock(storage, study.study_name)
        blocked = threading.Thread(target=second.acquire, daemon=True)
        blocked.start()
        blocked.join(0.3)
        assert blocked.is_alive()  # the lock is re-entrant on one connection: not here
    blocked.join(10)
    second.release()
    elsewhere.tell(theirs, 0.5)
    loop.join(60)
    assert not loop.is_alive() and tally(study).counted == 3
    assert opened == []  # every call went through the connection opened with the storage
    storage.engine.dispose()
