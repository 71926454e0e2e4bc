"""Moments as the code passes them: epoch seconds inside, aware UTC datetimes for PostgreSQL, ISO text for
people and JSON. One place converts, so a naive datetime or a local zone cannot slip in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def moment(value: float) -> datetime: ...
@overload
def moment(value: None) -> None: ...
def moment(value: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def iso(value: float | datetime | None) -> str | None:
    """ISO 8601 text of epoch seconds or a datetime; None stays None."""
    if value is None:
        return None
    return (value if isinstance(value, datetime) else moment(value)).isoformat()
