"""The metric reader: each custom gate's reading from its source, gathered before the verdict.

Built once from a plan file (its sources connect only when read). Each gate's read is
bounded by its source's timeout, and a failure becomes that gate's "no data" with the
reason (`fetch`), so one broken source never stops the evaluation or the other gates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rollout.controller.gates.metric import MetricGate
from rollout.controller.sources import MetricQuery, Reading, Source, SourceConfig, SourceContext, Window, build, fetch


class MetricReader:
    def __init__(self, gates: Sequence[MetricGate], sources: Mapping[str, Source]) -> None:
        self.gates = tuple(gates)
        self.sources = dict(sources)

    @classmethod
    def build(cls, gates: Sequence[MetricGate], configs: Mapping[str, SourceConfig],
              context: SourceContext) -> MetricReader:
        """The reader of `gates`, with the sources they use built from their configs (nothing connects yet)."""
        used = {gate.source for gate in gates}
        return cls(gates, {name: build(config, context) for name, config in configs.items() if name in used})

    def read(self, baseline: str, candidate: str, since: float, until: float) -> dict[str, Reading]:
        """Every custom gate's reading of the window [since, until) (epoch seconds), by gate name."""
        window = Window(baseline, candidate, since, until)
        return {gate.name: fetch(gate.source, self.sources[gate.source], MetricQuery(gate.query, gate.total), window)
                for gate in self.gates}
