"""The history tables' schema version: named migrations, each applied once per database.

As llm records its migrations (``_llm_migrations``), the names of the applied ones are rows of
``autotransfer_migrations``; the schema version of a database is how many it has applied. A
schema change is a new function decorated with :func:`migration`, after the others in
``autotransfer.study.store.history`` (which owns the tables), never an edit of an applied one: a
database written by any earlier version is brought up to date on first use, and the history
keeps what it recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

#: (name, function) in the order they apply; a function takes a SQLAlchemy connection.
MIGRATIONS: list[tuple[str, Callable[[Any], None]]] = []
TABLE = "autotransfer_migrations"


def migration(function: Callable[[Any], None]) -> Callable[[Any], None]:
    """Add ``function`` to :data:`MIGRATIONS` under its name."""
    MIGRATIONS.append((function.__name__, function))
    return function


def _table():
    from sqlalchemy import Column, DateTime, MetaData, String, Table

    metadata = MetaData()
    return Table(TABLE, metadata, Column("name", String(255), primary_key=True),
                 Column("applied", DateTime(timezone=True)))


def applied(engine) -> list[str]:
    """The names of the migrations ``engine``'s database has applied, in order."""
    from sqlalchemy import inspect, select

    table = _table()
    if not inspect(engine).has_table(TABLE):
        return []
    with engine.connect() as connection:
        done = {row.name for row in connection.execute(select(table.c.name))}
    return [name for name, _ in MIGRATIONS if name in done]


def schema_version(engine) -> int:
    """How many migrations ``engine``'s database has applied (0: no history tables yet)."""
    return len(applied(engine))


def migrate(engine) -> list[str]:
    """Apply the migrations ``engine``'s database lacks, each in its own transaction with its
    record; return the names applied now. Another process migrating at the same time is
    harmless: a migration it recorded first is not applied again."""
    from sqlalchemy.exc import IntegrityError

    table = _table()
    table.metadata.create_all(engine, checkfirst=True)
    done = set(applied(engine))
    now: list[str] = []
    for name, function in MIGRATIONS:
        if name in done:
            continue
        try:
            with engine.begin() as connection:
                function(connection)
                connection.execute(table.insert().values(name=name,
                                                         applied=datetime.now(timezone.utc)))
        except IntegrityError:  # recorded by another process in the meantime
            if name not in applied(engine):
                raise
            continue
        now.append(name)
    return now
