"""The flags: name, type, default, meaning, and the one parser every value goes through.

Values arrive as environment strings, JSON from the API, or Redis strings; all of
them pass `FlagDefinition.parse`, so a bad value is refused the same way everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class FlagError(ValueError):
    """A flag name or value that cannot be accepted; the message says why."""


class UnknownFlag(FlagError):
    pass


class InvalidFlagValue(FlagError):
    pass


class FlagKind(StrEnum):
    BOOLEAN = "boolean"
    PERCENTAGE = "percentage"


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class FlagDefinition:
    name: str
    kind: FlagKind
    default: bool | float
    description: str

    def parse(self, raw: object) -> bool | float:
        """Turn a raw value (str, bool, number) into this flag's type, or raise InvalidFlagValue."""
        if self.kind is FlagKind.BOOLEAN:
            return self._parse_boolean(raw)
        return self._parse_percentage(raw)

    def encode(self, value: bool | float) -> str:
        """The string kept in Redis (JSON scalars)."""
        if self.kind is FlagKind.BOOLEAN:
            return "true" if value else "false"
        return repr(float(value))

    def _parse_boolean(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise InvalidFlagValue(f"{self.name} takes true or false, not {raw!r}")

    def _parse_percentage(self, raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise InvalidFlagValue(f"{self.name} takes a number from 0 to 100, not {raw!r}")
        try:
            value = float(raw.strip().rstrip("%") if isinstance(raw, str) else raw)
        except ValueError:
            raise InvalidFlagValue(f"{self.name} takes a number from 0 to 100, not {raw!r}") from None
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise InvalidFlagValue(f"{self.name} must be between 0 and 100, not {raw!r}")
        if abs(round(value, 2) - value) > 1e-9:  # 0.35000000000000003 is 0.35 in binary floating point
            raise InvalidFlagValue(f"{self.name} has a resolution of 0.01 %, not {raw!r}")
        return round(value, 2)


GRADUAL_MIGRATION = "FF_ENABLE_GRADUAL_MIGRATION"
V2_PERCENTAGE = "FF_NEW_EMBEDDINGS_PERCENTAGE"
PARALLEL_RAG = "FF_USE_PARALLEL_RAG"
PERFORMANCE_LOGGING = "FF_ENABLE_PERFORMANCE_LOGGING"
QUERY_ANALYTICS = "FF_ENABLE_QUERY_ANALYTICS"

DEFINITIONS: dict[str, FlagDefinition] = {
    d.name: d
    for d in (
        FlagDefinition(GRADUAL_MIGRATION, FlagKind.BOOLEAN, False,
                       "Master switch of the migration: off routes every query to V1."),
        FlagDefinition(V2_PERCENTAGE, FlagKind.PERCENTAGE, 0.0,
                       "Share of users (0-100, 0.01 % steps) routed to V2, sticky per user."),
        FlagDefinition(PARALLEL_RAG, FlagKind.BOOLEAN, False,
                       "Also query the other version in the background and compare (shadow)."),
        FlagDefinition(PERFORMANCE_LOGGING, FlagKind.BOOLEAN, False,
                       "Log one latency line per request."),
        FlagDefinition(QUERY_ANALYTICS, FlagKind.BOOLEAN, False,
                       "Write one query_log row per query, off the request path."),
    )
}


def definition(name: str) -> FlagDefinition:
    try:
        return DEFINITIONS[name]
    except KeyError:
        raise UnknownFlag(f"unknown flag {name!r}; known flags: {', '.join(DEFINITIONS)}") from None
