"""Metric sources for the plan's custom gates: query_log (built in), Prometheus, SQL, HTTP JSON."""

from rollout.controller.sources.reading import Measurement, NoData, Reading, Window
from rollout.controller.sources.registry import BUILT_IN, SOURCES, build
from rollout.controller.sources.source import MetricQuery, Source, SourceConfig, SourceContext, fetch

__all__ = ["BUILT_IN", "SOURCES", "Measurement", "MetricQuery", "NoData", "Reading", "Source", "SourceConfig",
           "SourceContext", "Window", "build", "fetch"]
