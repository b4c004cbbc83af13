"""The clock seam: everything below the edges asks a :class:`Clock`, never ``time`` directly."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


class Clock(Protocol):
    """Seconds on a monotonic scale; only differences are meaningful."""

    def now(self) -> float:
        """Current time in seconds."""


class MonotonicClock:
    """The real clock: ``time.perf_counter`` (monotonic, sub-microsecond resolution)."""

    __slots__ = ()

    def now(self) -> float:
        """Current time in seconds."""
        return time.perf_counter()


class ManualClock:
    """A clock tests move by hand."""

    __slots__ = ("t",)

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        """The time last set."""
        return self.t

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        self.t += seconds
