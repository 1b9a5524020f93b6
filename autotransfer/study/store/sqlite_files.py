"""An existing SQLite file is looked at, read-only, before Optuna's storage touches it.

``optuna.storages.RDBStorage`` creates its tables in whatever database it is given, and
:func:`autotransfer.study.store.storage.make_storage` switches SQLite files to write-ahead
logging. A file that belongs to another application (a typo in ``--storage``, a shared folder)
would be changed for good. :func:`check_sqlite_file` opens the file with SQLite's read-only URI
(``file:...?mode=ro``), reads ``sqlite_master`` and Optuna's ``alembic_version``, and refuses
what is not a study database, or one whose schema Optuna must upgrade first, leaving the file
byte for byte as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from autotransfer.errors import StorageError

# Tables only an Optuna storage holds (optuna.storages._rdb.models), and the transfer history's.
# ``alembic_version`` is not one: every application migrated with alembic has it (MLflow).
OPTUNA_TABLES = frozenset({"studies", "version_info"})
AUTOTRANSFER_TABLES = frozenset({"autotransfer_datasets", "autotransfer_transfers"})
SHOWN_TABLES = 5


def check_sqlite_file(path: Path, shown: str) -> None:
    """Refuse an existing SQLite file that is not an Optuna study database, or whose Optuna
    schema is older than the installed Optuna's. A missing or empty file passes (it is new).

    Args:
        path: the database file (``~`` expanded).
        shown: the storage URL as printed (and in the upgrade command).

    Raises:
        StorageError: the file is not an SQLite database, holds another application's tables,
            or was created by another Optuna version (the message gives
            ``optuna storage upgrade --storage URL`` when Optuna can upgrade it).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            tables = {name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = None if row is None else row[0]
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:  # "file is not a database", a locked or broken file
        raise StorageError(f"storage {shown}: {path} is not an SQLite database ({exc}); "
                           "give a new file or an Optuna study database") from None
    if not tables or tables <= AUTOTRANSFER_TABLES:
        return
    if not tables >= OPTUNA_TABLES:
        names = sorted(tables)
        listed = ", ".join(names[:SHOWN_TABLES]) + (
            f" and {len(names) - SHOWN_TABLES} more" if len(names) > SHOWN_TABLES else "")
        raise StorageError(
            f"storage {shown}: {path} is another application's SQLite database (tables: "
            f"{listed}), not an Optuna study database; it was left unchanged: give a new file "
            "name, e.g. sqlite:///autotransfer.db")
    if revision is not None:
        _check_revision(revision, shown)


def _check_revision(revision: str, shown: str) -> None:
    """The file's Optuna schema revision against the installed Optuna's (its alembic head)."""
    import optuna

    head, known = _optuna_revisions()
    if revision == head:
        return
    if revision in known:
        raise StorageError(
            f"storage {shown}: its Optuna schema ({revision}) is older than optuna "
            f"{optuna.__version__}'s ({head}); back it up, then upgrade it with: "
            f"optuna storage upgrade --storage '{shown}'")
    raise StorageError(
        f"storage {shown}: its Optuna schema ({revision}) is newer than optuna "
        f"{optuna.__version__} knows; upgrade optuna (pip install -U optuna)")


def _optuna_revisions() -> tuple[str, set[str]]:
    """``(head, every revision)`` of the installed Optuna's storage schema, from the alembic
    scripts it ships (``optuna/storages/_rdb/alembic``, a private folder: check it on an
    Optuna upgrade)."""
    from alembic.script import ScriptDirectory
    from optuna.storages import _rdb

    script = ScriptDirectory(str(Path(_rdb.__file__).parent / "alembic"))
    return script.get_current_head(), {r.revision for r in script.walk_revisions()}
