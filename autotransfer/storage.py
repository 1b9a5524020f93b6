"""Storage URLs: validation, password masking, and Optuna's RDB storage."""

from __future__ import annotations

from pathlib import Path

from autotransfer.errors import StorageError

DEFAULT_STORAGE = "sqlite:///autotransfer.db"
_EXAMPLES = "sqlite:///autotransfer.db or postgresql+psycopg://user@host/dbname"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print or save)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable storage URL>"


def make_storage(url: str):
    """An ``optuna.storages.RDBStorage`` for ``url``; bad URLs are one-line StorageErrors."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"bad storage URL {url!r}: expected an SQLAlchemy URL such as {_EXAMPLES}"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 60}}
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StorageError(f"storage {shown}: folder {folder} does not exist")
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (NoSuchModuleError, ModuleNotFoundError, ImportError):
        hint = ""
        if parsed.get_backend_name() == "postgresql":
            hint = "; pip install 'psycopg[binary]' and use postgresql+psycopg://"
        raise StorageError(
            f"storage {shown}: no database driver for {parsed.drivername!r}{hint}"
        ) from None
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise StorageError(f"cannot open storage {shown}: {detail}") from None
