"""The real clock; tests pass their own Clock when time matters (expiry, leases)."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
