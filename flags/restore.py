"""Flags put back from `flag_audit` when Redis comes back without them.

Flags live in Redis, which may run without persistence: a restart empties it, and
every process would fall back to the environment defaults (at 0 %, every candidate
user back on the baseline, silently). PostgreSQL keeps every change in
`flag_audit`, so when the flags hash has no version at all (never written, or
wiped), each flag's last audited value is written back, in one compare-and-set that
applies only while the hash is still empty (several workers may try at once; one
wins). A hash that was never written finds no audit rows and stays as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flags.audit import FlagAudit
from flags.definitions import FlagError, definition
from flags.store import FlagStore

log = logging.getLogger(__name__)


class FlagRestore:
    def __init__(self, store: FlagStore, audit: FlagAudit, redis_up: Callable[[], bool]):
        self.store = store
        self.audit = audit
        self.redis_up = redis_up
        self._looked = False  # the empty hash was already compared with flag_audit
        self.restored: dict[str, str] = {}

    def tick(self) -> None:
        """From the replicator's tick: restore once per time the hash is seen empty."""
        replica = self.store.replica
        if replica.version is None or replica.version > 0 or replica.data:
            self._looked = False
            return
        if self._looked or not self.redis_up():
            return
        updates = self._last_audited()
        self._looked = True
        if not updates:
            return
        _version, restored = replica.transact(lambda data: (None, False) if data else ((updates, []), True))
        if restored:
            self.restored = updates
            log.warning("Redis held no flags (restarted without its data): restored %s from flag_audit",
                        ", ".join(f"{k}={v}" for k, v in sorted(updates.items())))

    def _last_audited(self) -> dict[str, str]:
        updates = {}
        for name, value in self.audit.last_values().items():
            try:
                flag = definition(name)
                updates[flag.name] = flag.encode(flag.parse(value))
            except FlagError:
                log.warning("flag_audit holds %r for %s, which is no longer valid: not restored", value, name)
        return updates
