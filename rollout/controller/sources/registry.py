"""The metric source registry: a plan's `sources.<name>.type` picks an entry here.

A new source is one module (a `Source` subclass with its pydantic `Config`) and one entry
in `SOURCES`; the plan file's validation, `rollout plan lint` and the controller find it here.
`query_log` is built in: every plan may name it without declaring it.
"""

from __future__ import annotations

from rollout.controller.sources.http_json import HttpJsonSource
from rollout.controller.sources.prometheus import PrometheusSource
from rollout.controller.sources.query_log import QueryLogConfig, QueryLogSource
from rollout.controller.sources.source import Source, SourceConfig, SourceContext
from rollout.controller.sources.sql import SqlSource

SOURCES: dict[str, type[Source]] = {
    "query_log": QueryLogSource,
    "prometheus": PrometheusSource,
    "sql": SqlSource,
    "http_json": HttpJsonSource,
}

BUILT_IN: dict[str, SourceConfig] = {"query_log": QueryLogConfig()}   # declared for every plan


def build(config: SourceConfig, context: SourceContext) -> Source:
    """The source a validated config describes."""
    return SOURCES[config.type](config, context)
