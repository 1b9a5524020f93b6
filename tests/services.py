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
    with postgres_server(password) as server:
        yield server.url


class PostgresServer:
    """A throwaway cluster that a test may stop and start again (an outage): ``url``,
    ``stop()``, ``start()``."""

    def __init__(self, bindir: Path, root: Path, as_postgres: list[str], max_connections: int):
        self.bindir, self.root, self.as_postgres = bindir, root, as_postgres
        self.port, self.data = free_port(), root / "data"
        self.max_connections = max_connections
        self.url = ""

    def run(self, *args: str) -> None:
        subprocess.run([*self.as_postgres, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                 str(self.root / "log"), "-o",
                 f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                 f"-c max_connections={self.max_connections}", "start")

    def stop(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@contextlib.contextmanager
def postgres_server(password: str = "s3cret", max_connections: int = 200
                    ) -> Iterator[PostgresServer]:
    """:func:`throwaway_postgres`, yielding the :class:`PostgresServer` itself."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise AutotransferError("PostgreSQL server missing: apt-get install postgresql")
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="autotransfer-pg-"))
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    server = PostgresServer(Path(found[-1]).parent, root, as_postgres, max_connections)
    try:
        server.run(str(server.bindir / "initdb"), "-D", str(server.data), "-U", "postgres",
                   "--auth=trust", "-E", "UTF8")
        server.start()
        try:
            for sql in (f"CREATE USER at PASSWORD '{password}'", "CREATE DATABASE at OWNER at"):
                server.run(str(server.bindir / "psql"), "-h", "127.0.0.1", "-p",
                           str(server.port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql)
            server.url = f"postgresql+psycopg://at:{password}@127.0.0.1:{server.port}/at"
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # a test stopped it
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
