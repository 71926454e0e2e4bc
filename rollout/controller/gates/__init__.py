"""The gates: each judges one aspect of the candidate from an `Evidence` and returns a `GateResult`."""

from rollout.controller.gates.consistency import consistency_gate
from rollout.controller.gates.facts import alerts_gate, breaker_gate, coverage_gate, stage_time_gate
from rollout.controller.gates.failures import critical_errors_gate, error_rate_gate
from rollout.controller.gates.latency import latency_gate
from rollout.controller.gates.quality import quality_gate
from rollout.controller.gates.result import GateResult, GateStatus
from rollout.controller.gates.split import sample_ratio_gate

__all__ = [
    "GateResult", "GateStatus", "alerts_gate", "breaker_gate", "consistency_gate", "coverage_gate",
    "critical_errors_gate", "error_rate_gate", "latency_gate", "quality_gate", "sample_ratio_gate",
    "stage_time_gate",
]
