"""Services this project's own tests start: a free TCP port, a throwaway PostgreSQL server."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from autotransfer.errors import AutotransferError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres(password: str = "s3cret") -> Iterator[str]:
    """Start a PostgreSQL cluster in a temporary folder on 127.0.0.1 and a free port; yield the
    URL of a database owned by user ``at`` with ``password``; stop and delete it afterwards.

    Needs the server binaries (Debian: ``apt-get install postgresql``); as root, the server runs
    as the ``postgres`` user, since ``initdb`` refuses root.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise AutotransferError("PostgreSQL server missing: apt-get install postgresql")
    bindir = Path(found[-1]).parent
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="autotransfer-pg-"))
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200",
            "start")
        try:
            for sql in (f"CREATE USER at PASSWORD '{password}'", "CREATE DATABASE at OWNER at"):
                run(str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-c", sql)
            yield f"postgresql+psycopg://at:{password}@127.0.0.1:{port}/at"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
