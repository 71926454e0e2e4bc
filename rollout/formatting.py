"""Numbers as people read them, one function per meaning (a share of traffic is not an error rate).

- `rate_percent`: a fraction (an error rate, a recall) as a percentage: 0.0123 -> "1.2 %";
- `share_percent`: a traffic share already in percent (FF_NEW_EMBEDDINGS_PERCENTAGE): 25.0 -> "25 %";
- `change_percent`: a ratio as a change: 1.27 -> "+27 %", 0.93 -> "-7 %".
A missing value (None) reads "n/a".
"""

from __future__ import annotations

MISSING = "n/a"


def rate_percent(fraction: float | None, digits: int = 1) -> str:
    return MISSING if fraction is None else f"{fraction * 100:.{digits}f} %"


def share_percent(share: float | None) -> str:
    return MISSING if share is None else f"{share:g} %"


def change_percent(ratio: float | None) -> str:
    return MISSING if ratio is None else f"{(ratio - 1) * 100:+.0f} %"
