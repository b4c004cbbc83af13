"""What one forwarded request tells health about its worker."""

from __future__ import annotations

from enum import Enum
from typing import Protocol

__all__ = ["Outcome", "OutcomeSink"]


class Outcome(Enum):
    """How an attempt on a worker ended, as outlier detection counts it.

    Attributes:
        SUCCESS: the worker answered 2xx: clears its failure streaks.
        NEUTRAL: says nothing about the worker (a 4xx the request caused; the client left).
        ERROR: the worker answered 5xx or reset the connection after the request was sent.
        TIMEOUT: no answer within the request's timeout.
        CONNECT: no connection could be made (refused, connect timeout).
    """

    SUCCESS = "success"
    NEUTRAL = "neutral"
    ERROR = "error"
    TIMEOUT = "timeout"
    CONNECT = "connect"


class OutcomeSink(Protocol):
    """Who the request path tells how each attempt ended (the health monitor)."""

    def observe(self, worker: str, outcome: Outcome) -> None:
        """Count one outcome of ``worker``."""
