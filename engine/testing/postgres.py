"""A private PostgreSQL cluster for tests and benchmarks: Debian's postgresql-15 binaries,
a temporary data directory, a free loopback port and a Unix socket of its own.

I/O: runs `initdb`, `pg_ctl`/`postgres` as the `postgres` user when we are root (PostgreSQL
refuses to run as root), and signals the server by its pid only. Nothing here touches a
system cluster: no systemd unit, no /var/lib/postgresql, no port another cluster holds.

    with PostgresCluster.start() as pg:
        pg.dsn                   # postgresql://shipslog@127.0.0.1:PORT/shipslog
        pg.stop(); pg.restart()  # a database that goes away and comes back mid-test
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresCluster", "postgres_available"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "shipslog"  # the cluster's bootstrap superuser (tests make narrower roles)


def postgres_available() -> str | None:
    """None when a private cluster can start here, else why not (for `pytest.skip`)."""
    if not (PG_BIN / "postgres").exists():
        return f"no PostgreSQL 15 server binaries at {PG_BIN} (apt-get install postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    """One private cluster: its data directory, port, and the server's process."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def dsn(self) -> str:
        return self.dsn_for(SUPERUSER)

    def dsn_for(self, user: str, password: str | None = None, database: str = "shipslog") -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    # -- life cycle -----------------------------------------------------------------------

    @classmethod
    def create(cls, base: Path | None = None) -> PostgresCluster:
        """initdb a new cluster (not started)."""
        root = Path(tempfile.mkdtemp(prefix="pg-", dir=base))
        os.chmod(root, 0o755)
        cluster = cls(root=root, port=_free_port())
        (root / "sock").mkdir()
        cluster._chown(root)
        cluster._as_postgres(
            [
                str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER,
                "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync",
            ]
        )
        with (root / "data" / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {cluster.port}\n"
                f"unix_socket_directories = '{root / 'sock'}'\n"
                "max_connections = 200\nshared_buffers = 128MB\n"
                "logging_collector = off\nfsync = on\nsynchronous_commit = on\n"
                "wal_level = logical\nmax_wal_senders = 4\nmax_replication_slots = 4\n"
            )
        return cluster

    @classmethod
    @contextlib.contextmanager
    def start(cls, base: Path | None = None) -> Iterator[PostgresCluster]:
        """A started cluster with a `shipslog` database, stopped and removed afterwards."""
        cluster = cls.create(base)
        try:
            cluster.run()
            cluster.psql("CREATE DATABASE shipslog", database="postgres")
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)

    def run(self, timeout: float = 30.0) -> None:
        """Start the server in the foreground of a child process (so we hold its pid)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.root / "data")],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._demote(),
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ):
                if self._ready():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not start in {timeout:.0f}s: {self.log_tail()}")

    def stop(self, *, fast: bool = True) -> None:
        """Stop the server by its pid (SIGINT: fast shutdown; SIGQUIT: immediate, like a crash)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT if fast else signal.SIGQUIT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.run()

    # -- helpers --------------------------------------------------------------------------

    def psql(self, sql: str, *, database: str = "shipslog", user: str = SUPERUSER) -> str:
        """Run SQL through psql over the cluster's socket; returns its unaligned output."""
        out = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h", str(self.socket_dir), "-p", str(self.port), "-U", user, "-d", database,
                "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql,
            ],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _ready(self) -> bool:
        isready = PG_BIN / "pg_isready"
        r = subprocess.run(
            [str(isready), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
        )
        return r.returncode == 0

    def _chown(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam("postgres")
        for dirpath, _dirs, files in os.walk(path):
            os.chown(dirpath, pw.pw_uid, pw.pw_gid)
            for name in files:
                os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)

    def _demote(self):  # type: ignore[no-untyped-def]
        if os.geteuid() != 0:
            return None
        pw = pwd.getpwnam("postgres")

        def demote() -> None:
            os.setgid(pw.pw_gid)
            os.setgroups([])
            os.setuid(pw.pw_uid)

        return demote

    def _as_postgres(self, argv: list[str]) -> None:
        r = subprocess.run(
            argv, preexec_fn=self._demote(), capture_output=True, text=True, check=False,
            cwd=str(self.root),
        )
        if r.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {r.stderr.strip()}")
