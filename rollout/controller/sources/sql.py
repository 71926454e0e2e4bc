"""SQL: one query returning a row per version, run read-only and bounded by a statement timeout.

The query gets the named parameters `%(baseline)s` and `%(candidate)s` (registry names),
`%(since)s` and `%(until)s` (the stage's window, timestamptz) and `%(window_s)s`; a literal
percent sign is written `%%`. Each row is `(version, value)` for a value or
`(version, events, trials)` for counts; rows of other versions are ignored. The database is
the controller's own unless `dsn_env` names the environment variable that holds another's URL
(a password never goes into a plan file). Each read opens its own connection with
`default_transaction_read_only` and `statement_timeout` set, so a query can neither write nor hang.
"""

from __future__ import annotations

import math
import os
from typing import Literal

import psycopg
from pydantic import Field

from rollout.controller.sources.reading import Measurement, NoData, Window, number
from rollout.controller.sources.source import MetricQuery, Source, SourceConfig, SourceContext, Timeout


class SqlConfig(SourceConfig):
    type: Literal["sql"] = "sql"
    dsn_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$",
                                description="environment variable holding the database URL (unset: the controller's)")
    statement_timeout: Timeout = 5.0


class SqlSource(Source):
    Config = SqlConfig
    counts_from = "rows of three columns (version, events, trials)"

    def __init__(self, config: SourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, SqlConfig)
        self.timeout_s = config.statement_timeout
        self.dsn_env = config.dsn_env

    def dsn(self) -> str:
        """The database URL, read when the source is (a gateway sharing the plan never needs it)."""
        if self.dsn_env is None:
            return self.context.database_url
        dsn = os.environ.get(self.dsn_env, "").strip()
        if not dsn:
            raise NoData(f"the SQL source reads its database URL from {self.dsn_env}, which is unset here")
        return dsn

    @classmethod
    def problems(cls, query: MetricQuery) -> list[str]:
        found = super().problems(query)
        if query.total is not None:
            found.append("an SQL source gives counts as rows (version, events, trials); total is not used")
        return found

    def read(self, query: MetricQuery, window: Window) -> dict[str, Measurement]:
        timeout_ms = round(self.timeout_s * 1000)
        options = f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
        roles = {version: role for role, version in window.versions().items()}
        dsn = self.dsn()
        try:
            with psycopg.connect(dsn, connect_timeout=max(1, math.ceil(self.timeout_s)), options=options) as conn:
                conn.execute("SET TRANSACTION READ ONLY")
                rows = conn.execute(query.query.encode(), window.params()).fetchall()
                conn.rollback()
        except psycopg.errors.QueryCanceled:
            raise NoData(f"the SQL query ran past its statement timeout ({self.timeout_s:g} s)") from None
        except psycopg.OperationalError as exc:
            raise NoData(f"the SQL source's database is unreachable: {str(exc).strip()}"[:500]) from None
        except psycopg.Error as exc:
            raise NoData(f"the SQL query failed: {str(exc).strip()}"[:500]) from None
        found: dict[str, Measurement] = {}
        for row in rows:
            if len(row) not in (2, 3):
                raise NoData(f"the SQL query returned rows of {len(row)} columns; expected (version, value) "
                             "or (version, events, trials)")
            role = roles.get(str(row[0]))
            if role is None:
                continue
            if role in found:
                raise NoData(f"the SQL query returned more than one row for {row[0]}")
            if row[1] is None or (len(row) == 3 and row[2] is None):
                continue   # NULL: nothing measured for that version
            if len(row) == 2:
                found[role] = Measurement(value=number(row[1], f"the value for {row[0]}"))
            else:
                found[role] = Measurement.counts(number(row[1], f"the events for {row[0]}"),
                                                 number(row[2], f"the trials for {row[0]}"))
        if "candidate" not in found:
            raise NoData(f"the SQL query returned no row for the candidate {window.candidate}")
        return found
