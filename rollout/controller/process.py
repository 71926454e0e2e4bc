"""The controller process (`rollout controller`): the schedule, the leader lock, a clean stop.

One APScheduler BackgroundScheduler runs three jobs (and, unless turned off, the query_log
retention job of `rollout/maintenance.py`, which guards itself with an advisory lock; the host
builds it, `ControllerHost.query_log_retention`):

- `leader`, every third of ROLLOUT_LEADER_TTL_S: renew the leader lock, or try to take it;
- `probes`, every RELEVANCE_PROBE_INTERVAL_S (first at start; 0: none): on the leader only, a
  round of known-item probes (`rollout.relevance.probes`, built by the host: the controller
  does not import the relevance package), relevance evidence without traffic;
- `evaluation`, every min(evaluation interval, a third of the TTL): on the leader only, take
  any flag change made elsewhere, then evaluate when the state's `next_evaluation_at` has
  come. The due time lives in PostgreSQL, so a new leader (or a restarted controller)
  keeps the schedule where the last one left it, instead of starting it over. Then it sends
  again any notification a stopped process left undelivered (`resend_undelivered`).

Never inside a web worker: gunicorn would run one scheduler per worker. SIGINT or SIGTERM
stops the schedule (an evaluation under way finishes), releases the lock so a standby
takes over at once, and waits a bounded time for notifications still being delivered.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
import redis
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]  # APScheduler 3 ships no types

from rollout.controller.leader import LeaderLock
from rollout.controller.metrics import ControllerMetrics
from rollout.errors import RolloutError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from rollout.controller.service import RolloutService
    from rollout.maintenance import Maintenance
    from rollout.metrics import Metrics

log = logging.getLogger(__name__)


class LeaderBusy(RolloutError):
    """Another controller holds the leader lock."""


class ProbeRound(Protocol):
    """A round of known-item probes (`rollout.relevance.probes.KnownItemProbes`)."""

    def run(self) -> object: ...


@dataclass(frozen=True)
class ControllerTimings:
    """The process's own schedule: ROLLOUT_LEADER_TTL_S and RELEVANCE_PROBE_INTERVAL_S."""

    leader_ttl_s: float = 30.0
    probe_interval_s: float = 3600.0  # 0: no probe rounds


class ControllerHost(Protocol):
    """What a controller needs of its process's services (a Runtime provides them): the controller
    is built by the composition root, never the other way round."""

    @property
    def stages(self) -> RolloutService: ...
    @property
    def redis(self) -> redis.Redis: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def controller_timings(self) -> ControllerTimings: ...
    def known_item_probes(self, registry: CollectorRegistry) -> ProbeRound:
        """The probes a leader runs, their metrics in `registry` (the controller's)."""
    def query_log_retention(self, scheduler: BackgroundScheduler) -> Maintenance:
        """The query_log retention job (`rollout.maintenance`), scheduled on the controller's `scheduler`."""


class ControllerProcess:
    def __init__(self, runtime: ControllerHost, *, retention: bool = True, identity: str | None = None,
                 metrics: ControllerMetrics | None = None):
        self.runtime = runtime
        self.service = runtime.stages
        self.metrics = metrics or ControllerMetrics()
        timings = runtime.controller_timings
        self.leader = LeaderLock(runtime.redis, self.service.leader_key, timings.leader_ttl_s, identity)
        renew_s = timings.leader_ttl_s / 3
        self.poll_s = min(self.service.plan.evaluation_interval_s, renew_s)
        now = datetime.now(UTC)
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.scheduler.add_job(self._lead, "interval", seconds=renew_s, id="leader", max_instances=1,
                               coalesce=True, next_run_time=now)
        self.scheduler.add_job(self._evaluate, "interval", seconds=self.poll_s, id="evaluation", max_instances=1,
                               coalesce=True, next_run_time=now)
        self.probes: ProbeRound | None = None
        if timings.probe_interval_s > 0:
            self.probes = runtime.known_item_probes(self.metrics.registry)
            self.scheduler.add_job(self._probe, "interval", seconds=timings.probe_interval_s, id="probes",
                                   max_instances=1, coalesce=True,
                                   next_run_time=now + timedelta(seconds=1))  # once the leader lock is taken
        self.maintenance = runtime.query_log_retention(self.scheduler) if retention else None
        self._stopped = False

    @property
    def identity(self) -> str:
        return self.leader.identity

    def start(self) -> ControllerProcess:
        """Start the schedule in the background (`rollout demo` hosts a controller this way)."""
        logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a skipped overlapping run is not news
        self.scheduler.start()
        log.info("controller %s started: evaluation every %g s, leader lock TTL %g s", self.identity,
                 self.service.plan.evaluation_interval_s, self.leader.ttl_s)
        return self

    def run(self, stop: threading.Event) -> None:
        """Run the schedule until `stop` is set (the signal handlers set it), then shut down cleanly."""
        self.start()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            self.shutdown()

    def run_once(self) -> list[dict[str, Any]]:
        """One evaluation now, as the leader (LeaderBusy if another controller is active)."""
        if not self.leader.refresh():
            holder = self.leader.holder()
            raise LeaderBusy(f"another controller is active ({holder[0] if holder else 'unknown'}); "
                             "nothing was evaluated")
        try:
            decisions = self.service.evaluate(leading=lambda: self.leader.held, controller=self.identity)
            self.service.resend_undelivered()
            return decisions
        finally:
            self.leader.release()
            self.service.notifier.close()

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.maintenance is not None:
            self.maintenance.retention.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.maintenance is not None:
            self.maintenance.stop()
        self.leader.release()
        self.metrics.leader.set(0)
        self.service.notifier.close()
        log.info("controller %s stopped", self.identity)

    # -- jobs -------------------------------------------------------------------------------------
    def _lead(self) -> None:
        try:
            self.leader.refresh()
        except Exception:
            log.exception("controller %s: leader lock check failed", self.identity)
        self.metrics.leader.set(1 if self.leader.held else 0)

    def _evaluate(self) -> None:
        if not self.leader.held:
            return
        try:
            decisions = self.service.evaluate(due_only=True, leading=lambda: self.leader.held,
                                              controller=self.identity)
            for decision in decisions:
                log.info("rollout %s (%s): %s %% -> %s %%, %s: %s", decision["kind"], decision["actor"],
                         f"{decision['percentage_before']:g}", f"{decision['percentage_after']:g}",
                         decision["status_after"], decision["reason"])
            redelivered = self.service.resend_undelivered()
            self.metrics.ran("ok", decisions, len(redelivered))
        except (psycopg.OperationalError, redis.RedisError, OSError) as exc:  # an outage: one line, not a traceback
            self.metrics.ran("skipped")
            log.warning("controller %s: evaluation skipped, a service is unreachable (%s: %s)", self.identity,
                        type(exc).__name__, str(exc).strip())
        except Exception:  # the next run tries again; the state is only changed by a committed transaction
            self.metrics.ran("failed")
            log.exception("controller %s: evaluation failed", self.identity)

    def _probe(self) -> None:
        """A round of known-item probes (`ControllerHost.known_item_probes`), on the leader only."""
        if not self.leader.held or self.probes is None:
            return
        try:
            self.probes.run()
        except (psycopg.OperationalError, OSError) as exc:
            log.warning("controller %s: probes skipped, PostgreSQL is unreachable (%s)", self.identity, exc)
        except Exception:
            log.exception("controller %s: probe round failed", self.identity)
