"""Overload protection of one gateway process: bounded requests and bytes in flight.

Two bounds, both checked before any work is done for a request:

* **requests in flight, by priority** (:class:`Admission`). A request of priority ``p`` is
  admitted while ``inflight < limit(p)``::

      limit(p) = max_inflight                          if p >= high_priority
               = max(1, floor(max_inflight * low_share)) otherwise

  so the last ``1 - low_share`` of the slots are kept for important traffic: when the gateway
  fills up, low priorities are refused first (429 + ``Retry-After``) while high priorities
  still get in. (Within the fleet's capacity the routing policy already sheds low priorities
  whose SLO cannot be met; this bound is what keeps the *gateway* itself from queueing
  without limit when the fleet is far slower than the offered load.)
* **bytes in flight** (:class:`ByteBudget`): request bodies being read or forwarded. With
  ``max_body_bytes`` per request and ``max_inflight`` requests the worst case would be their
  product (256 GiB with the defaults); the byte budget caps it at ``max_inflight_bytes`` so
  memory stays bounded under any mix of sizes. A request whose declared size does not fit is
  refused before its body is read.

Neither bound looks at the clock, so both are exact and cheap (a comparison per request).
"""

from __future__ import annotations

import math

__all__ = ["Admission", "ByteBudget"]


class Admission:
    """Priority-aware bound on requests in flight (see the module docstring).

    Args:
        max_inflight: requests in flight this gateway accepts at most.
        low_share: share of ``max_inflight`` open to priorities below ``high_priority``.
        high_priority: the lowest priority that may use every slot.
    """

    __slots__ = ("high_priority", "low_limit", "max_inflight")

    def __init__(self, max_inflight: int, low_share: float = 0.8, high_priority: int = 1) -> None:
        if max_inflight < 0 or not 0.0 < low_share <= 1.0:
            raise ValueError("max_inflight must be >= 0 and low_share in (0, 1]")
        self.max_inflight = max_inflight
        self.high_priority = high_priority
        self.low_limit = min(max_inflight, max(1, math.floor(max_inflight * low_share)))

    def limit(self, priority: int) -> int:
        """Requests in flight beyond which a request of ``priority`` is refused."""
        return self.max_inflight if priority >= self.high_priority else self.low_limit

    def admits(self, inflight: int, priority: int) -> bool:
        """Whether a request of ``priority`` may start with ``inflight`` already running."""
        return inflight < (self.max_inflight if priority >= self.high_priority else self.low_limit)


class ByteBudget:
    """Bytes of request bodies held in flight, capped at ``limit``.

    Args:
        limit: most bytes held at once.
    """

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.held = 0

    def try_acquire(self, n: int) -> bool:
        """Hold ``n`` more bytes if they fit; ``False`` (nothing held) if not."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        """Give back ``n`` bytes acquired earlier."""
        self.held = max(0, self.held - n)
