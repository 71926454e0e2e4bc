"""The routing decision: which version answers this user, and why.

Shaped like an OpenFeature evaluation result: a value (the version's name), a reason
from a closed set (used as a metric label), and the user's bucket. A decision reads
only local state: the flag snapshot, the guards' local copies and the rollout's two
versions (`Roles`, a snapshot of the version registry the runtime refreshes off the
request path). It never waits on Redis or PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol

from flags import GRADUAL_MIGRATION, RESOLUTION, V2_PERCENTAGE, FlagSnapshot, FlagStore, bucket, threshold

log = logging.getLogger(__name__)


class Reason(StrEnum):
    PERCENTAGE = "percentage"                  # the user's bucket against FF_NEW_EMBEDDINGS_PERCENTAGE
    HOLDBACK = "holdback"                      # the user is in the baseline holdback (ROLLOUT_HOLDBACK_PERCENT)
    MIGRATION_DISABLED = "migration_disabled"  # FF_ENABLE_GRADUAL_MIGRATION is off
    BREAKER_OPEN = "breaker_open"              # the candidate's circuit breaker is open
    ALERT = "alert"                            # a firing alert holds the candidate off
    V2_INCOMPLETE = "v2_incomplete"            # the candidate has not embedded this category completely
    FORCED = "forced"                          # the request named its version (admin)
    ERROR = "error"                            # the decision itself failed: the baseline, safely
    NO_CANDIDATE = "no_candidate"              # no rollout in progress: the baseline answers


class Decision(NamedTuple):
    """Immutable and typed; a NamedTuple because a frozen dataclass takes twice as long to build,
    and one is built per request (bench/routing.py)."""

    version: str
    reason: Reason
    bucket: int | None
    error: str | None = None


class Roles(NamedTuple):
    """The rollout's two versions by name: the baseline answers unless the candidate is chosen."""

    baseline: str
    candidate: str | None

    def other(self, version: str) -> str | None:
        """The version compared with `version` (its shadow): the candidate of the baseline and back."""
        return self.candidate if version == self.baseline else self.baseline


class V2Guard(Protocol):
    """Something that may hold the candidate off (breaker, alerts, coverage). Must answer from local state.

    `serving=False` is a pure read. `serving=True` means the caller searches the candidate for a user's
    answer and reports its outcome to the breaker: only then may a half-open breaker let the
    request through as its probe (and count the probe as sent).
    """

    def v2_blocked(self, category: str | None, *, serving: bool = False) -> Reason | None: ...


class RollbackMemory(Protocol):
    """What remembers the percentage a rollback lowered (the breaker). Must answer from local state."""

    def held_back(self, user_bucket: int) -> Reason | None: ...


class Router:
    """`holdback`: the percent of users kept on the baseline whatever the percentage (the top buckets,
    the last a rising percentage would reach), so the gates compare with live baseline traffic also at
    "100 %"; it ends with the rollout, when the candidate is promoted and no candidate is left."""

    def __init__(self, flags: FlagStore, group: str, roles: Roles, guards: Sequence[V2Guard] = (),
                 holdback: float = 0.0):
        self.flags = flags
        self.holdback_from = RESOLUTION - threshold(holdback)  # buckets from here on stay on the baseline
        self.group = group
        self.roles = roles  # replaced whole (one attribute write) when the registry changes
        self.guards = list(guards)
        self.rollbacks: RollbackMemory | None = None
        # the percentage's bucket threshold, computed once per flag snapshot (not per decision); one
        # tuple, replaced whole, so a thread never pairs a snapshot with another's threshold
        self._limit: tuple[FlagSnapshot | None, int] = (None, 0)

    def add_guard(self, guard: V2Guard) -> None:
        self.guards.append(guard)

    def remember_rollbacks(self, memory: RollbackMemory) -> None:
        """After a rollback lowered the percentage, the users it moved off the candidate are labelled with its
        reason (`alert`, `breaker_open`) rather than `percentage`, so the metrics show why."""
        self.rollbacks = memory

    def decide(self, user_key: str, category: str | None = None, forced: str | None = None, *,
               probe: bool = True) -> Decision:
        """`probe=False` when the decision only labels a query whose candidate search is guarded elsewhere
        (merged mode): a half-open breaker's probe is then left for that search."""
        roles = self.roles
        try:
            return self._decide(roles, user_key, category, forced, probe)
        except Exception as exc:  # routing must never fail a query
            log.exception("routing decision failed; serving the baseline")
            return Decision(roles.baseline, Reason.ERROR, None, error=type(exc).__name__)

    def _decide(self, roles: Roles, user_key: str, category: str | None, forced: str | None,
                probe: bool) -> Decision:
        baseline, candidate = roles
        snapshot = self.flags.snapshot()
        user_bucket = bucket(self.group, user_key)
        if forced == baseline:
            return Decision(baseline, Reason.FORCED, user_bucket)
        if candidate is None:
            return Decision(baseline, Reason.NO_CANDIDATE, user_bucket)
        if forced != candidate:
            if not snapshot[GRADUAL_MIGRATION]:
                return Decision(baseline, Reason.MIGRATION_DISABLED, user_bucket)
            limit = self._limit
            if limit[0] is not snapshot:
                limit = self._limit = (snapshot, threshold(float(snapshot[V2_PERCENTAGE])))
            if user_bucket >= limit[1]:
                held = self.rollbacks.held_back(user_bucket) if self.rollbacks is not None else None
                return Decision(baseline, held or Reason.PERCENTAGE, user_bucket)
            if user_bucket >= self.holdback_from:
                return Decision(baseline, Reason.HOLDBACK, user_bucket)
        # a forced candidate is held off by what protects users (breaker, alert), never by incomplete
        # coverage: the admin asked for the candidate as it is
        blocked = self._guarded(category, serving=probe, ignore=(Reason.V2_INCOMPLETE,) if forced else ())
        if blocked is not None:
            return Decision(baseline, blocked, user_bucket)
        return Decision(candidate, Reason.FORCED if forced else Reason.PERCENTAGE, user_bucket)

    def _guarded(self, category: str | None, *, serving: bool, ignore: tuple[Reason, ...] = ()) -> Reason | None:
        for guard in self.guards:
            blocked = guard.v2_blocked(category, serving=serving)
            if blocked is not None and blocked not in ignore:
                return blocked
        return None

    def v2_held_off(self, category: str | None = None, *, serving: bool = True) -> Reason | None:
        """Why the candidate may not be searched for this query now, whatever the user's bucket; None if it may.

        `serving=True` (merged mode: the candidate's results reach the client and its outcome is reported)
        also honours the master switch and may take a half-open breaker's probe; `serving=False`
        (a shadow search, whose outcome no breaker hears) only reads the guards.
        """
        try:
            if self.roles.candidate is None:
                return Reason.NO_CANDIDATE
            if serving and not self.flags.snapshot()[GRADUAL_MIGRATION]:
                return Reason.MIGRATION_DISABLED
            return self._guarded(category, serving=serving)
        except Exception:  # like decide(): when in doubt, the candidate stays off
            log.exception("candidate guard check failed; holding the candidate off")
            return Reason.ERROR
