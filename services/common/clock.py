"""Injectable time source, so lease and expiry rules are testable without sleeping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class ManualClock:
    """A clock tests move by hand."""

    current: float = field(default=1_700_000_000.0)

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def aware(moment: datetime) -> datetime:
    """A stored time with its zone: SQLite hands timestamps back without one, and every time
    is written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def unix_microseconds(moment: datetime) -> int:
    """A stored time as whole Unix microseconds, exactly (no float rounding)."""
    return (aware(moment) - _EPOCH) // timedelta(microseconds=1)
