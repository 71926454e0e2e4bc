"""The scheduled jobs of a serving host, run by the `rollout serve` / `rollout demo` process.

Following APScheduler's advice: one scheduler process, never one per web worker
(gunicorn workers would each run every job). The jobs guard themselves with
PostgreSQL advisory locks, so several hosts, or a `rollout controller` that
schedules the same jobs on its own scheduler (`scheduler=`), never run one twice at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from rollout.analytics.retention import QueryLogRetention
from rollout.config import Settings
from rollout.database import open_pool

FIRST_RUN_DELAY = timedelta(seconds=30)  # let the gateway start first


class Maintenance:
    def __init__(self, settings: Settings, database_url: str, *, first_run_delay: timedelta = FIRST_RUN_DELAY,
                 scheduler: BaseScheduler | None = None):
        """Schedule the jobs on `scheduler` (its owner starts and stops it), or on a scheduler of our own."""
        self.pool = open_pool(database_url, settings, name="maintenance", min_size=0, max_size=1)
        self.retention = QueryLogRetention(self.pool, settings.query_log_retention_days,
                                           statement_timeout_ms=settings.monitoring_query_timeout_ms)
        self.owns_scheduler = scheduler is None
        self.scheduler = BackgroundScheduler(timezone=UTC) if scheduler is None else scheduler
        self.scheduler.add_job(self.retention.run_once, "interval", id="query-log-retention",
                               seconds=settings.query_log_retention_interval_s, max_instances=1, coalesce=True,
                               next_run_time=datetime.now(UTC) + first_run_delay)

    def start(self) -> Maintenance:
        if self.owns_scheduler:
            self.scheduler.start()
        return self

    def stop(self) -> None:
        """Stop the jobs (a running deletion ends after its batch); a shared scheduler is its owner's to stop."""
        self.retention.stop()
        if self.owns_scheduler and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.pool.close()

    def __enter__(self) -> Maintenance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
