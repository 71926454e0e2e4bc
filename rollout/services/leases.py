"""Leases: which live processes use the embedded services, so the last one out stops them.

`rollout demo` and a `rollout migrate status` run beside it share one PostgreSQL
and one Redis. Each process holding a lease keeps them up; a lease whose process
died (even by SIGKILL) no longer counts.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseBook:
    """A folder of `<pid>.<token>` files (one per user, several per process) under a file lock."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.leases = folder / "leases"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise starts and stops between processes."""
        self.leases.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "services.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def take(self) -> str:
        """A new lease for this process; returns its name, to release it later."""
        name = f"{os.getpid()}.{uuid.uuid4().hex[:12]}"
        (self.leases / name).touch()
        return name

    def release(self, name: str) -> None:
        (self.leases / name).unlink(missing_ok=True)

    def holders(self) -> list[str]:
        """Leases of live processes; those of dead processes are swept on the way."""
        live = []
        for entry in self.leases.glob("*"):
            pid = entry.name.partition(".")[0]
            if pid.isdigit() and _alive(int(pid)):
                live.append(entry.name)
            else:
                entry.unlink(missing_ok=True)
        return live
