"""A throwaway PostgreSQL server for the test run (initdb + pg_ctl on a free port)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user() -> dict:
    """Run server binaries as the 'postgres' user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid}


class PostgresServer:
    """initdb into a temporary directory, start on 127.0.0.1, stop and delete on exit."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="paperboy-pg-"))
        self.data = self.dir / "data"
        self._run_as = _as_postgres_user()
        if self._run_as:
            os.chown(self.dir, self._run_as["user"], self._run_as["group"])

    def _run(self, *args: str) -> None:
        subprocess.run([str(self.bin_dir / args[0]), *args[1:]], check=True, capture_output=True,
                       cwd=self.dir, **self._run_as)

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-U", "paperboy", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off " \
                  f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://paperboy@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "paperboy", name)
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
