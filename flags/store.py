"""The flag store: environment defaults, Redis overrides, a local snapshot read per request.

`snapshot()` is a plain attribute read: it is rebuilt when the replicated hash
changes, never on the request path. Changes go through `set` / `reset`, which
validate, write to Redis (announced to every process) and call the audit sinks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType

from flags.definitions import DEFINITIONS, FlagDefinition, FlagError, definition
from flags.replica import ReplicatedHash

log = logging.getLogger(__name__)


class Source(str, Enum):
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
    audit_error: str | None = None  # the change stands; its audit row could not be written


AuditSink = Callable[[FlagChange], None]


class FlagStore:
    def __init__(self, replica: ReplicatedHash, environ: Mapping[str, str] | None = None,
                 definitions: Mapping[str, FlagDefinition] = DEFINITIONS):
        self.replica = replica
        self.definitions = definitions
        self.env_values = self._parse_environment(environ or {})
        self._audit_sinks: list[AuditSink] = []
        self._snapshot = self._build()
        replica.on_change(lambda _replica: self._rebuild())

    # -- reading (no I/O) -----------------------------------------------------
    def snapshot(self) -> FlagSnapshot:
        return self._snapshot

    def get(self, name: str) -> bool | float:
        return self._snapshot.values[definition(name).name]

    def describe(self) -> list[dict]:
        snap = self._snapshot
        return [
            {"name": d.name, "type": d.kind.value, "value": snap.values[d.name],
             "source": snap.sources[d.name].value, "default": d.default, "description": d.description}
            for d in self.definitions.values()
        ]

    # -- writing --------------------------------------------------------------
    def add_audit_sink(self, sink: AuditSink) -> None:
        self._audit_sinks.append(sink)

    def set(self, name: str, raw_value: object, *, actor: str, reason: str | None = None) -> FlagChange:
        """Validate and store an override; raises FlagError or redis.RedisError."""
        flag = definition(name)
        value = flag.parse(raw_value)
        old = self.get(flag.name)
        version = self.replica.write({flag.name: flag.encode(value)})
        return self._audited(FlagChange(flag.name, old, value, actor, reason, version))

    def reset(self, name: str, *, actor: str, reason: str | None = None) -> FlagChange:
        """Drop the override: the flag falls back to its environment value or default."""
        flag = definition(name)
        old = self.get(flag.name)
        version = self.replica.write(deletes=[flag.name])
        return self._audited(FlagChange(flag.name, old, self.get(flag.name), actor, reason, version))

    # -- internals ------------------------------------------------------------
    def _audited(self, change: FlagChange) -> FlagChange:
        """Run the audit sinks; a failing sink is reported on the change, never undoes it."""
        errors = []
        for sink in self._audit_sinks:
            try:
                sink(change)
            except Exception as exc:
                log.error("flag change %s applied but not audited: %s", change.flag, exc)
                errors.append(str(exc).strip() or type(exc).__name__)
        return replace(change, audit_error="; ".join(errors)) if errors else change

    def _parse_environment(self, environ: Mapping[str, str]) -> dict[str, bool | float]:
        values = {}
        for name, flag in self.definitions.items():
            if name in environ and str(environ[name]).strip() != "":
                values[name] = flag.parse(environ[name])  # a bad FF_* value stops start-up
        return values

    def _rebuild(self) -> None:
        self._snapshot = self._build()

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
