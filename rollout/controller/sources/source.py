"""A metric source: one small interface each backend implements (the plan names it by `type`).

A source is built once from its block in the plan (`Config`, a pydantic model, so a plan's
mistakes are found by `rollout plan lint` before anything connects) and read at each
evaluation for one custom gate's query. `read` returns each version's measurement by role
(`baseline`, `candidate`) or raises `NoData` with the reason; `fetch` turns anything else a
source may raise (a timeout, a refused connection, a bad answer) into that reason too.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from psycopg_pool import ConnectionPool
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from rollout.controller.sources.reading import Measurement, NoData, Reading, Window

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def seconds(raw: object) -> object:
    """A duration as seconds: a number of seconds, or a string such as '90s', '5m', '72h', '3d'."""
    if isinstance(raw, str):
        match = _DURATION.match(raw)
        if match is None:
            raise ValueError(f"{raw!r} is not a duration (a number of seconds, or e.g. 30s, 5m, 72h, 3d)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return raw


Duration = Annotated[float, BeforeValidator(seconds)]
Timeout = Annotated[float, BeforeValidator(seconds), Field(gt=0, le=300)]


class SourceConfig(BaseModel):
    """A source's block in the plan; `type` picks the entry of the registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


class HttpAuth(BaseModel):
    """Credentials for an HTTP source, read from files at each request (as Prometheus' own `credentials_file`
    and `password_file`): the plan holds no secret, and a rotated token is used from the next evaluation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bearer_token_file: str | None = Field(None, description="a file holding the token sent as `Bearer <token>`")
    username: str | None = Field(None, description="basic auth's user name")
    password_file: str | None = Field(None, description="a file holding basic auth's password")

    @model_validator(mode="after")
    def _one_scheme(self) -> HttpAuth:
        if self.bearer_token_file is not None and (self.username is not None or self.password_file is not None):
            raise ValueError("give either bearer_token_file or username and password_file, not both")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("basic auth needs both username and password_file")
        if self.bearer_token_file is None and self.username is None:
            raise ValueError("give bearer_token_file, or username and password_file")
        return self

    def headers(self) -> dict[str, str]:
        """The Authorization header; NoData naming the file when it cannot be read."""
        if self.bearer_token_file is not None:
            return {"Authorization": f"Bearer {_secret(self.bearer_token_file)}"}
        assert self.username is not None and self.password_file is not None
        pair = f"{self.username}:{_secret(self.password_file)}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}


def _secret(path: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise NoData(f"cannot read the credentials file {path}: {exc.strerror or exc}") from None
    if not value:
        raise NoData(f"the credentials file {path} is empty")
    return value


@dataclass(frozen=True)
class MetricQuery:
    """A custom gate's question to its source: `query`, and `total` when the source counts events of trials."""

    query: str
    total: str | None = None


@dataclass(frozen=True)
class SourceContext:
    """What the controller lends its sources: its own database (query_log, and SQL without a DSN of its own)."""

    database_url: str
    pool: ConnectionPool | None = None
    statement_timeout_ms: int = 15000


class Source(ABC):
    """One backend. A subclass sets `Config` and `counts_from` and implements `read` (and `problems`)."""

    Config: ClassVar[type[SourceConfig]] = SourceConfig
    counts_from: ClassVar[str]   # how the source gives counts, for the docs and lint's messages

    def __init__(self, config: SourceConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    def problems(cls, query: MetricQuery) -> list[str]:
        """What is wrong with a gate's query for this source, before anything runs (lint)."""
        return [] if query.query.strip() else ["the query is empty"]

    @abstractmethod
    def read(self, query: MetricQuery, window: Window) -> dict[str, Measurement]:
        """Each version's measurement by role; NoData (with the reason) when there is none."""

    @staticmethod
    def each_version(window: Window, measure: Callable[[str], Measurement | None]) -> dict[str, Measurement]:
        """`measure` for the candidate, then the baseline, by role, for a source asked once per version. The
        candidate's NoData is the reading's; the baseline's figure is only context, so its NoData leaves it out."""
        found: dict[str, Measurement] = {}
        for role, version in (("candidate", window.candidate), ("baseline", window.baseline)):
            try:
                measured = measure(version)
            except NoData:
                if role == "candidate":
                    raise
                continue
            if measured is not None:
                found[role] = measured
        return found


def fetch(name: str, source: Source, query: MetricQuery, window: Window) -> Reading:
    """One gate's reading: the measurements, or the reason there are none (never an exception)."""
    versions = window.versions()
    if not window.candidate:
        return Reading(name, versions, missing="no candidate: no rollout is under way")
    try:
        measurements = source.read(query, window)
    except NoData as exc:
        return Reading(name, versions, missing=str(exc))
    except Exception as exc:  # a source's failure is the gate's missing data, never the controller's crash
        return Reading(name, versions, missing=f"{type(exc).__name__}: {str(exc).strip()}"[:500])
    if "candidate" not in measurements:
        return Reading(name, versions, measurements, missing=f"no value for the candidate {window.candidate}")
    return Reading(name, versions, measurements)


def get_json(url: str, timeout_s: float, headers: Mapping[str, str] | None = None) -> Any:
    """GET `url` and parse its JSON body; NoData saying what went wrong (refused, timed out, HTTP status,
    not JSON). A 4xx/5xx answer with a JSON body (Prometheus' errors) is returned for the caller to read."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return json.loads(body)
        except ValueError:
            raise NoData(f"HTTP {exc.code} from {_origin(url)}: {body[:200].decode(errors='replace')}") from None
    except TimeoutError:
        raise NoData(f"{_origin(url)} did not answer within {timeout_s:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise NoData(f"{_origin(url)} did not answer within {timeout_s:g} s") from None
        raise NoData(f"{_origin(url)} is unreachable: {exc.reason}") from None
    except OSError as exc:
        raise NoData(f"{_origin(url)} is unreachable: {exc}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise NoData(f"{_origin(url)} did not answer JSON: {body[:200].decode(errors='replace')!r}") from None


def _origin(url: str) -> str:
    """scheme://host:port of a URL, for messages (a query string may be long, or carry a token)."""
    match = re.match(r"^[a-z]+://[^/?#]+", url)
    return match.group(0) if match else url[:80]
