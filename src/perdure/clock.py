"""The one seam through which Perdure reads the wall clock (UTC epoch milliseconds)."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Current time as integer epoch milliseconds, the unit stored in the database."""
    return time.time_ns() // 1_000_000
