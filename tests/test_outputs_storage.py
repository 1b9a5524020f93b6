"""Outputs and study databases are checked before the first trial and never harmed: an --out
that is a file, read-only, immutable or on a full disk is one line before any trial (search) or
training (train); ``~`` in an SQLite URL is the home folder; another application's SQLite file,
or one with an older Optuna schema, is refused and left byte for byte as it was."""

import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autotransfer.errors import OptionError, StorageError
from autotransfer.outputs import check_out_dir
from autotransfer.study.store.storage import make_storage
from conftest import write_images

SPACE = """
backbones: [{id: timm/test_efficientnet, pretrained: false}]
epochs: 1
pruner: none
params: {image_size: 32, batch_size: 8}
"""


def _cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-c", "from autotransfer.cli import main; main()",
                           *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env)


def _data(tmp_path: Path) -> Path:
    for name, seed in (("circle", 1), ("square", 2)):
        write_images(tmp_path / "data" / name, 6, seed=seed)
    (tmp_path / "space.yaml").write_text(SPACE)
    return tmp_path / "data"


def _read_only(folder: Path) -> None:
    """Make ``folder`` unwritable even for root (immutable), or skip when this cannot be done;
    a real write checks it."""
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True)
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return
    (folder / "probe").unlink()
    pytest.skip("cannot make a folder unwritable here (root without chattr +i)")


def _writable_again(folder: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], check=False, capture_output=True)
    folder.chmod(0o755)


def _trials(db: Path) -> int:
    if not db.exists():
        return 0
    storage = f"sqlite:///{db}"
    return sum(len(optuna.load_study(study_name=s.study_name, storage=storage).trials)
               for s in optuna.get_all_study_summaries(storage))


def test_search_and_train_refuse_an_out_that_is_a_file_before_any_trial(tmp_path):
    data = _data(tmp_path)
    (tmp_path / "outE").write_text("a file")
    run = _cli("search", data, "--space", "space.yaml", "--trials", "1", "--storage",
               "sqlite:///e.db", "--out", "outE", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[-1] == ("error: --out 'outE' is an existing file; expected a folder for the "
                         "results (a new or an existing one)")
    assert "internal error" not in run.stderr
    assert _trials(tmp_path / "e.db") == 0  # refused before the study got a trial
    ok = _cli("search", data, "--space", "space.yaml", "--trials", "1", "--storage",
              "sqlite:///e.db", "--out", "out", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    train = _cli("train", "out/best.yaml", "--out", "outE", cwd=tmp_path)
    assert train.returncode == 1
    assert train.stderr.strip().splitlines()[-1].startswith("error: --out 'outE' is an existing")
    assert "epoch" not in train.stdout  # nothing was trained
    under = _cli("train", "out/best.yaml", "--out", "outE/model", cwd=tmp_path)
    assert "error: --out 'outE/model' cannot be created:" in under.stderr
    assert (tmp_path / "outE").read_text() == "a file"


def test_search_refuses_an_out_in_a_read_only_folder_before_any_trial(tmp_path):
    data = _data(tmp_path)
    _read_only(tmp_path / "ro")
    try:
        run = _cli("search", data, "--space", "space.yaml", "--trials", "1", "--storage",
                   "sqlite:///f.db", "--out", tmp_path / "ro" / "out", cwd=tmp_path)
        assert run.returncode == 1, run.stderr
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: --out '{tmp_path / 'ro' / 'out'}' cannot be written (its "
                               f"nearest existing folder '{tmp_path / 'ro'}'): ")
        assert _trials(tmp_path / "f.db") == 0
        assert list((tmp_path / "ro").iterdir()) == []  # the probe left nothing
    finally:
        _writable_again(tmp_path / "ro")


def test_a_full_disk_is_found_by_the_write_probe(tmp_path):
    """A real full file system (a 64 KiB tmpfs filled up) where this sandbox lets root mount
    one; the error path itself is also checked with ENOSPC raised at the write."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        handle = os.open(mount / "fill", os.O_CREAT | os.O_WRONLY)
        with pytest.raises(OSError):
            while True:
                os.write(handle, b"\0" * 4096)
        os.close(handle)
        with pytest.raises(OptionError) as info:
            check_out_dir(mount / "out")
        assert str(info.value).endswith(": the disk is full")
        assert sorted(p.name for p in mount.iterdir()) == ["fill"]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_the_write_probe_names_the_os_reason(tmp_path, monkeypatch):
    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("autotransfer.outputs.os.fsync", full)
    with pytest.raises(OptionError) as info:
        check_out_dir(tmp_path / "new" / "out", option="out")
    assert str(info.value) == (f"out {str(tmp_path / 'new' / 'out')!r} cannot be written (its "
                               f"nearest existing folder {str(tmp_path)!r}): the disk is full")
    assert list(tmp_path.iterdir()) == []  # no folder made, the probe file removed
    monkeypatch.undo()
    assert check_out_dir(tmp_path / "new" / "out") == tmp_path / "new" / "out"
    assert list(tmp_path.iterdir()) == []


def test_tilde_in_an_sqlite_url_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    storage = make_storage("sqlite:///~/studies.db")
    optuna.create_study(storage=storage, study_name="t")
    storage.engine.dispose()
    assert (tmp_path / "home" / "studies.db").is_file()
    assert not (tmp_path / "~").exists()
    assert [s.study_name for s in optuna.get_all_study_summaries(
        f"sqlite:///{tmp_path / 'home' / 'studies.db'}")] == ["t"]


def test_a_failed_new_sqlite_file_is_removed(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(StorageError, match="cannot open storage .*disk I/O error"):
        make_storage(f"sqlite:///{tmp_path / 'new.db'}")
    assert list(tmp_path.iterdir()) == []


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_another_applications_sqlite_file_is_refused_and_left_as_it_was(tmp_path):
    db = tmp_path / "notes.db"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
    connection.execute("INSERT INTO notes VALUES (1, 'keep me')")
    connection.commit()
    connection.close()
    before = _digest(tmp_path)
    with pytest.raises(StorageError) as info:
        make_storage(f"sqlite:///{db}")
    assert str(info.value) == (
        f"storage sqlite:///{db}: {db} is another application's SQLite database (tables: "
        "notes), not an Optuna study database; it was left unchanged: give a new file name, "
        "e.g. sqlite:///autotransfer.db")
    assert _digest(tmp_path) == before  # byte for byte, and no -wal / -shm file appeared
    connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # no WAL switch
    connection.close()
    (tmp_path / "page.db").write_text("<html>not a database</html>" * 40)
    with pytest.raises(StorageError, match="is not an SQLite database"):
        make_storage(f"sqlite:///{tmp_path / 'page.db'}")


def test_an_alembic_managed_database_of_another_application_is_not_told_to_upgrade(tmp_path):
    """MLflow's tracking database has an ``alembic_version`` table, as Optuna's has (#42 kind
    8): it is another application's, named with its tables, never given Optuna's upgrade."""
    db = tmp_path / "mlflow.db"
    connection = sqlite3.connect(db)
    for table in ("alembic_version (version_num TEXT)", "experiments (name TEXT)",
                  "runs (run_uuid TEXT)", "metrics (key TEXT)"):
        connection.execute(f"CREATE TABLE {table}")
    connection.execute("INSERT INTO alembic_version VALUES ('4465047574b1')")
    connection.commit()
    connection.close()
    before = _digest(tmp_path)
    with pytest.raises(StorageError) as info:
        make_storage(f"sqlite:///{db}")
    message = str(info.value)
    assert ("(tables: alembic_version, experiments, metrics, runs), not an Optuna study "
            "database; it was left unchanged") in message
    assert "upgrade" not in message and _digest(tmp_path) == before


def test_the_cli_refuses_a_foreign_database_in_one_line(tmp_path):
    data = _data(tmp_path)
    db = tmp_path / "app.db"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE users (name TEXT)")
    connection.commit()
    connection.close()
    before = db.read_bytes()
    run = _cli("search", data, "--space", "space.yaml", "--trials", "1", "--storage",
               f"sqlite:///{db}", "--out", "out", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: storage sqlite:///{db}: {db} "
                                                          "is another application's")
    assert db.read_bytes() == before and not (tmp_path / "out").exists()


def test_an_older_optuna_schema_names_the_upgrade_command(tmp_path):
    db = tmp_path / "old.db"
    storage = make_storage(f"sqlite:///{db}")
    optuna.create_study(storage=storage, study_name="old")
    storage.engine.dispose()
    connection = sqlite3.connect(db)  # as optuna 3.0 left it (the revision before the head)
    connection.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    connection.commit()
    connection.close()
    before = _digest(tmp_path)
    with pytest.raises(StorageError) as info:
        make_storage(f"sqlite:///{db}")
    message = str(info.value)
    assert f"its Optuna schema (v3.0.0.d) is older than optuna {optuna.__version__}'s" in message
    assert message.endswith(f"optuna storage upgrade --storage 'sqlite:///{db}'")
    # the database itself is unchanged (reading a WAL-mode file makes SQLite's -shm index)
    assert _digest(tmp_path)["old.db"] == before["old.db"]
