"""Leases: which live processes use the embedded services, so the last one out stops them.

`rollout demo` and a `rollout migrate status` run beside it share one PostgreSQL
and one Redis. Each process holding a lease keeps them up; a lease whose process
died (even by SIGKILL) no longer counts.
"""

from __future__ import annotations

import fcntl
import os
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
    """A folder of `<pid>` files guarded by an exclusive file lock."""

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

    def take(self, pid: int) -> None:
        (self.leases / str(pid)).touch()

    def release(self, pid: int) -> None:
        (self.leases / str(pid)).unlink(missing_ok=True)

    def holders(self) -> list[int]:
        """Live lease holders; stale leases are swept on the way."""
        live = []
        for entry in self.leases.glob("*"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if _alive(pid):
                live.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return live
