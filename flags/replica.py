"""A Redis hash mirrored in every process, so that reading it never waits on the network.

Writers change the hash, bump its version and announce the change on a pub/sub
channel in one MULTI/EXEC (`write`), or in one compare-and-set Lua call whose
announcement carries the new copy (`transact`: read-decide-write, e.g. the circuit
breaker). A `Replicator` thread per process listens to the channels of its hashes and
installs the announced copy, or reloads when the message only says "changed"; every `check_interval_s`
it also compares versions (one MGET), which catches a missed message. When Redis
is unreachable the last copy keeps serving, the replicator reports itself
unhealthy, retries with backoff, and reloads everything once Redis answers again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

import redis
from redis.typing import EncodableT, FieldT

log = logging.getLogger(__name__)

Listener = Callable[["ReplicatedHash"], None]
Change = tuple[Mapping[str, str], Iterable[str]]  # (fields to set, fields to delete)
T = TypeVar("T")


# KEYS: hash, version; ARGV: expected version, channel, JSON updates, JSON deletes.
_COMPARE_AND_SET = """
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then return false end
for field, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[1], field, value) end
for _, field in ipairs(cjson.decode(ARGV[4])) do redis.call('HDEL', KEYS[1], field) end
local version = redis.call('INCR', KEYS[2])
local flat = redis.call('HGETALL', KEYS[1])
local data = {}
for i = 1, #flat, 2 do data[flat[i]] = flat[i + 1] end
redis.call('PUBLISH', ARGV[2], cjson.encode({version = version, data = data}))
return {version, flat}
"""


@dataclass(frozen=True)
class _Copy:
    data: Mapping[str, str]
    version: int | None  # None: never loaded


class ReplicatedHash:
    """One Redis hash (`key`), its version counter (`key:version`) and channel (`key:changed`)."""

    def __init__(self, client: redis.Redis, key: str, *, write_client: redis.Redis | None = None):
        """`write_client` (default `client`) serves `write` and `transact`: writers on a request path
        give it a shorter socket timeout than the replicator's reads, so a hung Redis holds them briefly."""
        self.client = client
        self.writer = write_client or client
        self.key = key
        self.version_key = f"{key}:version"
        self.channel = f"{key}:changed"
        self._copy = _Copy(MappingProxyType({}), None)
        self._install_lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._compare_and_set = self.writer.register_script(_COMPARE_AND_SET)

    @property
    def data(self) -> Mapping[str, str]:
        """The local copy: a read-only mapping, swapped whole on each change."""
        return self._copy.data

    @property
    def version(self) -> int | None:
        return self._copy.version

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def load(self, *, force: bool = False) -> bool:
        """Fetch hash and version together; install unless older than the copy (or `force`).

        A forced load that reads an older version than the copy looks once more: a write
        of this process may have landed between the read and now, and installing the
        older read would serve a stale copy until the next announcement. Only a version
        that is still older (Redis was emptied or restored) replaces the copy.
        """
        version, data = self._fetch()
        current = self._copy.version
        if force and current is not None and version < current:
            version, data = self._fetch()
        return self._install(version, data, force=force)

    def _fetch(self, client: redis.Redis | None = None) -> tuple[int, dict[str, str]]:
        pipe = (client or self.client).pipeline(transaction=True)
        pipe.get(self.version_key)
        pipe.hgetall(self.key)
        version, data = pipe.execute()
        return int(version or 0), data

    def write(self, updates: Mapping[str, str] | None = None, deletes: Iterable[str] = ()) -> int:
        """Apply changes atomically, announce them, install them locally; return the new version."""
        deletes = list(deletes)
        pipe = self.writer.pipeline(transaction=True)
        if updates:
            fields: dict[FieldT, EncodableT] = {name: value for name, value in updates.items()}
            pipe.hset(self.key, mapping=fields)
        if deletes:
            pipe.hdel(self.key, *deletes)
        pipe.incr(self.version_key)
        pipe.hgetall(self.key)
        pipe.publish(self.channel, "changed")
        *_, version, data, _receivers = pipe.execute()
        self._install(int(version), data, force=False)
        return int(version)

    def transact(self, compute: Callable[[Mapping[str, str]], tuple[Change | None, T]],
                 attempts: int = 50) -> tuple[int | None, T]:
        """Read, decide and write atomically against concurrent writers (compare-and-set on the version).

        `compute` sees the current hash and returns `(change, result)`: `change` is
        `(updates, deletes)` to apply and announce, or None to leave the hash alone.
        It may run more than once (a concurrent write retries it), so it must be a
        pure function of its argument. The first decision is made on the local copy;
        the write is one Lua call that applies the change only if Redis still holds
        that version (else it reads Redis and decides again), and announces the new
        copy in the message itself, so receivers install it without a round trip.
        Returns the new version (None: unchanged) and the result of the run that counted.
        """
        copy = self._copy
        for attempt in range(attempts):
            # optimistic first: the local copy is almost always current, which saves a round trip
            if attempt == 0 and copy.version is not None:
                version, data = copy.version, copy.data
            else:
                version, data = self._fetch(self.writer)
            change, result = compute(data)
            if change is None:
                return None, result
            updates, deletes = change
            reply = self._compare_and_set(keys=[self.key, self.version_key],
                                          args=[version, self.channel, json.dumps(dict(updates)),
                                                json.dumps(list(deletes))])
            if reply is None:
                continue  # another writer got there first: decide again on its result
            new_version, flat = reply
            self._install(int(new_version), dict(zip(flat[::2], flat[1::2], strict=False)), force=False)
            return int(new_version), result
        raise redis.WatchError(f"{self.key}: gave up after {attempts} concurrent writes")

    def receive(self, message: str | bytes) -> None:
        """An announcement: install the copy it carries (newer only), else fetch the hash."""
        text = _text(message)
        if text.startswith("{"):
            try:
                announced = json.loads(text)
                self._install(int(announced["version"]), dict(announced["data"]), force=False)
                return
            except (ValueError, KeyError, TypeError):
                log.warning("%s: unreadable announcement; fetching the hash", self.key)
        self.load()

    def _install(self, version: int, data: Mapping[str, str], *, force: bool) -> bool:
        with self._install_lock:
            current = self._copy
            if not force and current.version is not None and version <= current.version:
                return False
            if current.version == version and dict(current.data) == dict(data):
                return False
            self._copy = _Copy(MappingProxyType(dict(data)), version)
        for listener in self._listeners:
            try:
                listener(self)
            except Exception:  # a listener must never stop replication
                log.exception("listener of %s failed", self.key)
        return True


class Replicator:
    """The per-process thread that keeps a set of ReplicatedHash copies current."""

    def __init__(self, client: redis.Redis, hashes: Iterable[ReplicatedHash], *,
                 check_interval_s: float = 5.0, name: str = "replicator"):
        self.client = client
        self._tick_callbacks: list[Callable[[], None]] = []
        self.hashes = {h.channel: h for h in hashes}
        self.check_interval_s = check_interval_s
        self.name = name
        self._stop = threading.Event()
        self._wake_channel = f"{name}:wake:{uuid.uuid4().hex}"  # stop() publishes here: the loop ends at once
        self._thread: threading.Thread | None = None
        self._healthy = False
        self._last_contact: float | None = None
        self.last_error: str | None = None

    def watch(self, replica: ReplicatedHash) -> None:
        """Also keep `replica` current (call before `start`)."""
        self.hashes[replica.channel] = replica

    # -- state seen by health checks and metrics ---------------------------
    @property
    def healthy(self) -> bool:
        return self._healthy

    def snapshot_age_s(self) -> float | None:
        """Seconds since Redis last confirmed the copies were current; None if it never did."""
        if self._last_contact is None:
            return None
        return time.monotonic() - self._last_contact

    # -- lifecycle ----------------------------------------------------------
    def sync_now(self) -> bool:
        """Load every hash once, synchronously (start-up); False if Redis did not answer."""
        try:
            for replica in self.hashes.values():
                replica.load(force=True)
        except (redis.RedisError, OSError) as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the loop; it ends as soon as Redis delivers the wake-up, not at its next half-second poll."""
        self._stop.set()
        if self._thread is None or not self._thread.is_alive():
            return
        try:
            self.client.publish(self._wake_channel, "")
        except (redis.RedisError, OSError):
            pass  # Redis is away: the loop is pausing on the stop event, or its poll ends within half a second
        self._thread.join(timeout_s)

    # -- the loop -------------------------------------------------------------
    def _run(self) -> None:
        pubsub = None
        backoff = 0.1
        next_check = 0.0
        while not self._stop.is_set():
            self._tick()
            try:
                if pubsub is None:
                    pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(*self.hashes, self._wake_channel)
                    for replica in self.hashes.values():  # whatever changed while we were away
                        replica.load(force=True)
                    next_check = time.monotonic() + self.check_interval_s
                    self._mark_up()
                wait = max(0.0, min(0.5, next_check - time.monotonic()))
                message = pubsub.get_message(timeout=wait)
                if message and message.get("type") == "message" and _text(message["channel"]) in self.hashes:
                    self.hashes[_text(message["channel"])].receive(message["data"])
                    self._mark_up()
                if time.monotonic() >= next_check:
                    self._check_versions()
                    next_check = time.monotonic() + self.check_interval_s
                backoff = 0.1
            except (redis.RedisError, OSError, ValueError) as exc:
                self._mark_down(exc)
                _close(pubsub)
                pubsub = None
                self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
        _close(pubsub)

    def _pause(self, seconds: float) -> None:
        """Wait out a reconnection backoff, still ticking about twice a second (timers run on ticks)."""
        deadline = time.monotonic() + seconds
        while not self._stop.wait(max(0.0, min(0.5, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            self._tick()

    def on_tick(self, callback: Callable[[], None]) -> None:
        """Run `callback` about twice a second on this thread (gauges, timers): no extra thread."""
        self._tick_callbacks.append(callback)

    def _tick(self) -> None:
        for callback in self._tick_callbacks:
            try:
                callback()
            except Exception:
                log.exception("%s: tick callback failed", self.name)

    def _check_versions(self) -> None:
        replicas = list(self.hashes.values())
        versions = self.client.mget([r.version_key for r in replicas])
        for replica, version in zip(replicas, versions, strict=False):
            if int(version or 0) != replica.version:
                replica.load(force=True)  # a missed message, or Redis was emptied
        self._mark_up()

    def _mark_up(self) -> None:
        self._last_contact = time.monotonic()
        if not self._healthy:
            log.info("%s: Redis reachable, copies current", self.name)
        self._healthy = True
        self.last_error = None

    def _mark_down(self, exc: BaseException) -> None:
        if self._healthy or self.last_error is None:
            log.warning("%s: Redis unreachable, serving the last copy: %s", self.name, exc)
        self._healthy = False
        self.last_error = str(exc) or type(exc).__name__


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _close(pubsub: redis.client.PubSub | None) -> None:
    if pubsub is not None:
        try:
            pubsub.close()
        except Exception:  # closing a broken connection may fail; it is discarded either way
            pass
    return None
