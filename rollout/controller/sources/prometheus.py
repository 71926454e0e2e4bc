"""Prometheus: an instant PromQL query over its HTTP API (`GET /api/v1/query`), once per version.

In the query, `{version}` becomes the version's registry name (escaped for a label value)
and `{window}` the stage's window as a PromQL duration (`3600s`), so
`sum(increase(rag_requests_total{version="{version}"}[{window}]))` counts a version's
requests in the stage. The query is evaluated at the evaluation's time. A gate with `total`
gets counts (`query` events of `total` trials, rounded: `increase()` extrapolates); without
it a value. The answer must be one number: a scalar, or a vector of exactly one series.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Literal

from pydantic import Field

from rollout.controller.sources.reading import Measurement, NoData, Window, number
from rollout.controller.sources.source import HttpAuth, MetricQuery, Source, SourceConfig, Timeout, get_json


class PrometheusConfig(SourceConfig):
    type: Literal["prometheus"] = "prometheus"
    url: str = Field(pattern=r"^https?://[^\s/]+", description="Prometheus' base URL, e.g. http://prometheus:9090")
    timeout: Timeout = 5.0
    auth: HttpAuth | None = None


def label_value(name: str) -> str:
    """A version name inside a PromQL double-quoted string."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


def promql(template: str, version: str, window: Window) -> str:
    return template.replace("{version}", label_value(version)).replace("{window}", f"{round(window.seconds)}s")


class PrometheusSource(Source):
    Config = PrometheusConfig
    counts_from = "`query` (events) and `total` (trials), each one number per version"

    @classmethod
    def problems(cls, query: MetricQuery) -> list[str]:
        found = super().problems(query)
        if "{version}" not in query.query:
            found.append("the query has no {version}: it would measure both versions alike")
        if query.total is not None and "{version}" not in query.total:
            found.append("total has no {version}: it would count both versions alike")
        return found

    def read(self, query: MetricQuery, window: Window) -> dict[str, Measurement]:
        found = self.each_version(window, lambda version: self._measure(query, version, window))
        if "candidate" not in found:
            raise NoData(f"Prometheus returned no series for the candidate {window.candidate}")
        return found

    def _measure(self, query: MetricQuery, version: str, window: Window) -> Measurement | None:
        events = self._value(promql(query.query, version, window), window, version)
        if events is None or query.total is None:
            return None if events is None else Measurement(value=events)
        trials = self._value(promql(query.total, version, window), window, version)
        return None if trials is None else Measurement.counts(events, trials)

    def _value(self, expression: str, window: Window, version: str) -> float | None:
        config = self.config
        assert isinstance(config, PrometheusConfig)
        url = (config.url.rstrip("/") + "/api/v1/query?"
               + urllib.parse.urlencode({"query": expression, "time": f"{window.until:.3f}",
                                         "timeout": f"{config.timeout:g}s"}))
        answer: Any = get_json(url, config.timeout, config.auth.headers() if config.auth else None)
        if not isinstance(answer, dict):
            raise NoData(f"Prometheus answered something other than its API's JSON: {str(answer)[:200]}")
        if answer.get("status") != "success":
            raise NoData(f"Prometheus refused the query ({answer.get('errorType', 'error')}): "
                         f"{answer.get('error', 'no reason given')}"[:500])
        data = answer.get("data") or {}
        kind, result = data.get("resultType"), data.get("result") or []
        if kind == "scalar":
            return number(result[1], f"the query's value for {version}")
        if kind != "vector":
            raise NoData(f"the query returned a {kind}; a gate needs one number (an instant vector or scalar)")
        if not result:
            return None
        if len(result) > 1:
            raise NoData(f"the query returned {len(result)} series for {version}; a gate needs one "
                         "(aggregate it, e.g. sum(...))")
        return number(result[0]["value"][1], f"the query's value for {version}")
