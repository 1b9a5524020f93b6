"""A database server that goes away during a trial, or has too few connections for the
workers: waited out for a stated time, or one line naming the cause and the remedy."""

import contextlib
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from autotransfer.errors import StorageError
from autotransfer.study.store.outage import StorageUnreachable, check_connections
from autotransfer.study.store.storage import make_storage
from autotransfer.study.workers import storage_outage

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres")]


@pytest.fixture(scope="module")
def server():
    """A throwaway PostgreSQL server of this module's own, which the tests stop and start."""
    from autotransfer.errors import AutotransferError
    from services import postgres_server

    try:
        with postgres_server(max_connections=10) as found:
            yield found
    except AutotransferError as exc:
        pytest.fail(f"{exc} (make test installs it)")


def _up(server) -> None:
    with contextlib.suppress(Exception):  # already running
        server.start()


def test_an_outage_mid_trial_is_waited_out_and_the_trial_completes(server, monkeypatch, capfd):
    """The server stops while a trial reports and its tell follows; it is back 3 s later: the
    calls wait (saying so once, with the time they wait), the trial is COMPLETE."""
    monkeypatch.setenv("AUTOTRANSFER_STORAGE_RETRY", "30")
    storage = make_storage(server.url, heartbeat_interval=1)
    study = optuna.create_study(study_name="outage", storage=storage)

    def objective(trial):
        server.stop()
        threading.Timer(3.0, server.start).start()
        trial.report(0.5, 1)  # a write while the server is down
        return 0.9

    with storage_outage():
        study.optimize(objective, n_trials=1)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value == 0.9
    assert trial.intermediate_values == {1: 0.5}
    err = capfd.readouterr().err
    assert err.count("cannot be reached") == 1 and "retrying for up to 30 s" in err
    assert "invalid data in the commit" not in err  # Optuna's guess; the server's cause is said
    assert "s3cret" not in err


def test_an_outage_longer_than_the_wait_is_one_line_and_the_heartbeat_fails_the_trial(
        server, monkeypatch):
    """Still down after AUTOTRANSFER_STORAGE_RETRY seconds: one StorageError line (never
    Optuna's UnboundLocalError), and once the server is back the next run fails the trial
    (its heartbeat stopped) and queues its retry, so it is not left RUNNING."""
    monkeypatch.setenv("AUTOTRANSFER_STORAGE_RETRY", "1")
    storage = make_storage(server.url, heartbeat_interval=1)
    study = optuna.create_study(study_name="long-outage", storage=storage)

    def objective(trial):
        time.sleep(0.5)  # its heartbeat thread records the first heartbeat
        server.stop()
        trial.report(0.5, 1)
        return 0.9

    started = time.monotonic()
    try:
        with pytest.raises(StorageUnreachable) as info, storage_outage():
            study.optimize(objective, n_trials=1, catch=(Exception,))
    finally:
        _up(server)
    assert time.monotonic() - started < 20
    line = str(info.value)
    assert "did not answer for 1 s" in line and "AUTOTRANSFER_STORAGE_RETRY" in line
    assert "\n" not in line and "s3cret" not in line
    time.sleep(3.5)  # the grace period: 3 heartbeat intervals
    optuna.storages.fail_stale_trials(study)
    # failed, and queued again by the heartbeat's retry (autotransfer.study.store.storage)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


def test_too_few_server_connections_for_the_workers_is_one_line(server):
    """max_connections 10, 3 of them reserved, some in use (this process's own among them): one
    worker more than are free (1 connection each) is refused in one line naming
    max_connections and the workers, before any of them starts."""
    from sqlalchemy import text

    storage = make_storage(server.url)
    with storage.engine.connect() as connection:  # this one and any an earlier test left
        used = connection.execute(text("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE backend_type = 'client backend'")).scalar()
    check_connections(storage, 7 - used, "pg")  # as many as are free fit
    with pytest.raises(StorageError) as info:
        check_connections(storage, 8 - used, "pg")
    line = str(info.value)
    assert "max_connections is 10" in line
    assert f"--workers {8 - used} need up to {8 - used} (1 each)" in line
    assert "fewer --workers" in line


def test_the_search_checks_the_connections_before_any_trial(server, tmp_path, capsys):
    from conftest import cli_error, write_images

    for name in ("a", "b"):
        write_images(tmp_path / "data" / name, 4)
    space = tmp_path / "space.yaml"
    space.write_text("backbones: [packaged/mobilenetv2_100]\nepochs: 1\n")
    err = cli_error(capsys, "search", str(tmp_path / "data"), "--space", str(space),
                    "--workers", "7", "--trials", "7",
                    "--storage", server.url, "--out", str(tmp_path / "out"))
    assert "max_connections" in err and "--workers 7" in err and "s3cret" not in err
    assert not (tmp_path / "out").exists()
