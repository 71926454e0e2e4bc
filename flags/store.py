"""The flag store: environment defaults, Redis overrides, a local snapshot read per request.

`snapshot()` is a plain attribute read: it is rebuilt when the replicated hash
changes, never on the request path. Changes go through `set` / `reset`, which
validate, write the audit row and Redis as one change (announced to every process):
the audit transaction is open while Redis is written, and committed after it; if the
row cannot be written the flag is not changed, and if its commit fails the Redis
write is undone. A change is never applied without its record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from flags.definitions import DEFINITIONS, FlagDefinition, FlagError, definition
from flags.replica import ReplicatedHash

log = logging.getLogger(__name__)


class Source(StrEnum):
    REDIS = "redis"          # an override set through the API or CLI
    ENVIRONMENT = "env"      # FF_* in the environment or .env
    DEFAULT = "default"      # the definition's default


@dataclass(frozen=True)
class FlagSnapshot:
    """Every flag's value and where it came from, at one replica version."""

    values: Mapping[str, bool | float]
    sources: Mapping[str, Source]
    version: int | None
    built_at: float = field(default_factory=time.time)

    def __getitem__(self, name: str) -> bool | float:
        return self.values[name]


@dataclass(frozen=True)
class FlagChange:
    flag: str
    old: bool | float
    new: bool | float
    actor: str
    reason: str | None
    version: int
    changed: bool = True  # False: the override already held this value; nothing written, nothing audited


class FlagNotAudited(Exception):
    """The change was refused (or undone): its audit row could not be written."""


AuditSink = Callable[[FlagChange], AbstractContextManager[object]]  # writes the row; commits when the block ends
SnapshotListener = Callable[["FlagSnapshot"], None]  # must return at once (OpenFeature's hooks, for snapshots)


def _refusal(change: FlagChange, exc: Exception) -> str:
    log.error("flag change %s refused: its audit row could not be written: %s", change.flag, exc)
    return (f"{change.flag} was not changed: its flag_audit row could not be written "
            f"({str(exc).strip() or type(exc).__name__})")


class FlagStore:
    def __init__(self, replica: ReplicatedHash, environ: Mapping[str, str] | None = None,
                 definitions: Mapping[str, FlagDefinition] = DEFINITIONS):
        self.replica = replica
        self.definitions = definitions
        self.env_values = self._parse_environment(environ or {})
        self._audit_sinks: list[AuditSink] = []
        self._listeners: list[SnapshotListener] = []
        self._snapshot = self._build()
        replica.on_change(lambda _replica: self._rebuild())

    # -- reading (no I/O) -----------------------------------------------------
    def snapshot(self) -> FlagSnapshot:
        return self._snapshot

    def get(self, name: str) -> bool | float:
        return self._snapshot.values[definition(name).name]

    def describe(self) -> list[dict[str, object]]:
        snap = self._snapshot
        return [
            {"name": d.name, "type": d.kind.value, "value": snap.values[d.name],
             "source": snap.sources[d.name].value, "default": d.default, "description": d.description}
            for d in self.definitions.values()
        ]

    # -- writing --------------------------------------------------------------
    def add_audit_sink(self, sink: AuditSink) -> None:
        self._audit_sinks.append(sink)

    def add_listener(self, listener: SnapshotListener) -> None:
        """Told each new snapshot (an override set here or elsewhere), and the current one at once."""
        self._listeners.append(listener)
        self._tell(listener, self._snapshot)

    def set(self, name: str, raw_value: object, *, actor: str, reason: str | None = None) -> FlagChange:
        """Validate and store an override; raises FlagError, redis.RedisError or FlagNotAudited."""
        flag = definition(name)
        value = flag.parse(raw_value)
        snapshot = self._snapshot
        if snapshot.sources[flag.name] is Source.REDIS and snapshot.values[flag.name] == value:
            return FlagChange(flag.name, value, value, actor, reason, snapshot.version or 0, changed=False)
        return self._change(FlagChange(flag.name, self.get(flag.name), value, actor, reason, 0),
                            {flag.name: flag.encode(value)}, [])

    def reset(self, name: str, *, actor: str, reason: str | None = None) -> FlagChange:
        """Drop the override: the flag falls back to its environment value or default."""
        flag = definition(name)
        fallback = self.env_values.get(flag.name, flag.default)
        return self._change(FlagChange(flag.name, self.get(flag.name), fallback, actor, reason, 0), {}, [flag.name])

    # -- internals ------------------------------------------------------------
    def _change(self, change: FlagChange, writes: dict[str, str], deletes: list[str]) -> FlagChange:
        """Write the audit rows and Redis as one change: both, or neither."""
        before = {name: self.replica.data.get(name) for name in [*writes, *deletes]}
        version = None
        try:
            with ExitStack() as audit:
                try:
                    for sink in self._audit_sinks:
                        audit.enter_context(sink(change))
                except Exception as exc:  # leaving the block rolls back the rows already written
                    raise FlagNotAudited(_refusal(change, exc)) from exc
                version = self.replica.write(writes, deletes=deletes)  # a Redis error: rows rolled back
        except FlagNotAudited:
            raise
        except Exception as exc:
            if version is None:
                raise
            self._undo(before)  # the rows' commit failed after Redis was written
            raise FlagNotAudited(_refusal(change, exc)) from exc
        return replace(change, version=version)

    def _undo(self, before: Mapping[str, str | None]) -> None:
        restore = {name: value for name, value in before.items() if value is not None}
        self.replica.write(restore, deletes=[name for name, value in before.items() if value is None])

    def _parse_environment(self, environ: Mapping[str, str]) -> dict[str, bool | float]:
        values = {}
        for name, flag in self.definitions.items():
            if name in environ and str(environ[name]).strip() != "":
                values[name] = flag.parse(environ[name])  # a bad FF_* value stops start-up
        return values

    def _rebuild(self) -> None:
        self._snapshot = snapshot = self._build()
        for listener in self._listeners:
            self._tell(listener, snapshot)

    @staticmethod
    def _tell(listener: SnapshotListener, snapshot: FlagSnapshot) -> None:
        try:
            listener(snapshot)
        except Exception:  # an observer must never stop a flag change from being seen
            log.exception("flag listener %r failed", listener)

    def _build(self) -> FlagSnapshot:
        overrides = self.replica.data
        values: dict[str, bool | float] = {}
        sources: dict[str, Source] = {}
        for name, flag in self.definitions.items():
            if name in overrides:
                try:
                    values[name], sources[name] = flag.parse(overrides[name]), Source.REDIS
                    continue
                except FlagError:
                    log.warning("ignoring invalid Redis value %r for %s", overrides[name], name)
            if name in self.env_values:
                values[name], sources[name] = self.env_values[name], Source.ENVIRONMENT
            else:
                values[name], sources[name] = flag.default, Source.DEFAULT
        return FlagSnapshot(MappingProxyType(values), MappingProxyType(sources), self.replica.version)
