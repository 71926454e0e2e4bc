"""The controller process's own metrics, so a stopped or stuck controller is seen, not assumed.

The controller is one process (not a gunicorn worker), so it keeps a plain registry and,
when ROLLOUT_CONTROLLER_METRICS_PORT is set, serves it on its own port for Prometheus.
An alert on `time() - rollout_controller_last_run_timestamp_seconds` catches a controller
that no longer evaluates; `max(rollout_controller_leader)` = 0 one that nobody leads.

Each evaluation also exports every gate's headline: its statistic, the confidence-sequence
bound on the rollback side, the threshold that bound is held against, and its status (one
series per status, 1 for the current one), the same numbers the decision row keeps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from rollout.controller.gates.result import GateStatus
from rollout.errors import ServiceError


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.leader = Gauge("rollout_controller_leader", "1 while this controller holds the leader lock.",
                            registry=self.registry)
        self.runs = Counter("rollout_controller_runs", "Evaluation runs of the leading controller, by result "
                            "(ok, skipped: a service was unreachable, failed: an unexpected error).",
                            ["result"], registry=self.registry)
        self.last_run = Gauge("rollout_controller_last_run_timestamp_seconds",
                              "When the leading controller last completed an evaluation run.", registry=self.registry)
        self.decisions = Counter("rollout_controller_decisions", "Decisions this controller recorded, by kind "
                                 "and action (advance, hold, pause, rollback, ...).", ["kind", "action"],
                                 registry=self.registry)
        self.redelivered = Counter("rollout_controller_notifications_redelivered",
                                   "Notifications a stopped process left pending, sent again.", registry=self.registry)
        self.percentage = Gauge("rollout_controller_stage_percentage",
                                "The rollout's percentage after this controller's last decision.",
                                registry=self.registry)
        self.gate_statistic = Gauge("rollout_gate_statistic", "The gate's statistic at the last evaluation "
                                    "(e.g. the candidate's error rate, the p95 ratio).", ["gate"],
                                    registry=self.registry)
        self.gate_bound = Gauge("rollout_gate_bound", "The gate's confidence-sequence bound on the rollback side at "
                                "the last evaluation.", ["gate"], registry=self.registry)
        self.gate_threshold = Gauge("rollout_gate_threshold", "The threshold the gate's bound is held against.",
                                    ["gate"], registry=self.registry)
        self.gate_status = Gauge("rollout_gate_status", "1 for the gate's status at the last evaluation, 0 for the "
                                 "others.", ["gate", "status"], registry=self.registry)
        for result in ("ok", "skipped", "failed"):
            self.runs.labels(result)

    def ran(self, result: str, decisions: Sequence[Mapping[str, Any]] = (), redelivered: int = 0) -> None:
        self.runs.labels(result).inc()
        if result == "ok":
            self.last_run.set(time.time())
        for decision in decisions:
            self.decisions.labels(decision["kind"], decision["action"]).inc()
            self.percentage.set(decision["percentage_after"])
            if decision.get("verdict"):
                self.judged(decision["verdict"]["gates"])
        if redelivered:
            self.redelivered.inc(redelivered)

    def judged(self, gates: Sequence[Mapping[str, Any]]) -> None:
        """Export each gate's statistic, bound, threshold and status (a stored verdict's `gates`)."""
        for gate in gates:
            name = gate["name"]
            for gauge, key in ((self.gate_statistic, "statistic"), (self.gate_bound, "bound"),
                               (self.gate_threshold, "limit")):
                value = gate.get(key)
                gauge.labels(name).set(float("nan") if value is None else value)
            for status in GateStatus:
                self.gate_status.labels(name, status.value).set(1 if gate["status"] == status.value else 0)


def serve_metrics(metrics: ControllerMetrics, host: str, port: int) -> WSGIServer:
    """Serve `metrics` on host:port (`rollout controller` and the demo's controller); returns the server."""
    try:
        server, _ = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        raise ServiceError(f"cannot serve the controller's metrics on {host}:{port} ({exc.strerror or exc}); "
                           "set ROLLOUT_CONTROLLER_METRICS_PORT to a free port") from None
    return server


def stop_serving(server: WSGIServer) -> None:
    server.shutdown()
    server.server_close()
