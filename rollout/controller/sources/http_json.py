"""HTTP JSON: GET a URL per version and take a number out of the JSON answer by a path.

The source's `url` may hold `{version}` (the version's registry name, URL-quoted),
`{since}` and `{until}` (epoch seconds of the stage's window) and `{window}` (its length in
seconds). A gate's `query` is a path into the answer: keys and list positions joined by
dots (`stats.errors`, `series.0.value`). With `total` (a second path into the same answer)
the gate gets counts, else a value.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Literal

from pydantic import Field

from rollout.controller.sources.reading import Measurement, NoData, Window, number
from rollout.controller.sources.source import HttpAuth, MetricQuery, Source, SourceConfig, Timeout, get_json

_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


class HttpJsonConfig(SourceConfig):
    type: Literal["http_json"] = "http_json"
    url: str = Field(pattern=r"^https?://[^\s/]+", description="the URL to GET, with {version} and friends")
    timeout: Timeout = 5.0
    auth: HttpAuth | None = None


def expand(template: str, version: str, window: Window) -> str:
    return (template.replace("{version}", urllib.parse.quote(version, safe=""))
            .replace("{since}", f"{window.since:.0f}").replace("{until}", f"{window.until:.0f}")
            .replace("{window}", f"{round(window.seconds)}"))


def pick(document: Any, path: str) -> Any:
    """The value at a dotted path (keys, or list positions as numbers); NoData naming the missing step."""
    here = document
    walked: list[str] = []
    for step in path.split("."):
        walked.append(step)
        if isinstance(here, dict) and step in here:
            here = here[step]
        elif isinstance(here, list) and step.isdigit() and int(step) < len(here):
            here = here[int(step)]
        else:
            raise NoData(f"the answer has no {'.'.join(walked)}")
    return here


class HttpJsonSource(Source):
    Config = HttpJsonConfig
    counts_from = "`query` (events) and `total` (trials), two paths into the same answer"

    @classmethod
    def problems(cls, query: MetricQuery) -> list[str]:
        found = []
        for name, path in (("query", query.query), ("total", query.total)):
            if path is not None and not _PATH.match(path):
                found.append(f"{name} {path!r} is not a path (keys or positions joined by dots, e.g. stats.errors)")
        return found

    def read(self, query: MetricQuery, window: Window) -> dict[str, Measurement]:
        try:
            return self.each_version(window, lambda version: self._measure(query, version, window))
        except NoData as exc:  # only the candidate's reaches here
            raise NoData(f"{exc} (candidate {window.candidate})") from None

    def _measure(self, query: MetricQuery, version: str, window: Window) -> Measurement:
        config = self.config
        assert isinstance(config, HttpJsonConfig)
        answer = get_json(expand(config.url, version, window), config.timeout,
                          config.auth.headers() if config.auth else None)
        value = number(pick(answer, query.query), query.query)
        if query.total is None:
            return Measurement(value=value)
        return Measurement.counts(value, number(pick(answer, query.total), query.total))
