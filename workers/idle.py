"""Wait until a fleet holds no work: so a benchmark's next policy starts on an idle fleet.

A client that gives up on a request does not take it out of Triton's queue: after a policy
that overloaded a pool (``round_robin`` on the demo's Raspberry Pis), its servers keep working
through the backlog for seconds. The next policy would start with those queues ahead of its
own requests and a fresh view that knows nothing of them, and its table would pay for the
previous policy's mistakes. So ``synergai demo`` and ``synergai bench`` wait, between
policies, until

* every server's backlog is 0: Triton's ``nv_inference_pending_request_count`` summed over its
  models (queued) plus the emulated device's busy slots (executing; Triton's pending count
  leaves those out), see :meth:`workers.fleet.Fleet.backlog`; and
* the gateway has nothing in flight (``InferenceService.inflight`` in the demo, the
  ``synergai_inflight_requests`` gauge of every replica in the bench): a request between the
  gateway and Triton (in the emulated network relay, say) is in neither count,

on two polls in a row. A server whose metrics do not answer (crashed) holds no queue; it is
reported as down for the caller to restart. The wait is bounded: what is still busy at the
bound is reported, and the caller decides (the bench restarts those servers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Idle", "wait_idle"]


@dataclass(frozen=True)
class Idle:
    """How a :func:`wait_idle` ended.

    Attributes:
        idle: every server that answers held nothing and the gateway had nothing in flight.
        waited_s: seconds spent waiting.
        busy: worker -> backlog, for those still holding work at the end.
        down: workers whose metrics did not answer.
        inflight: the gateway's in-flight requests at the end.
    """

    idle: bool
    waited_s: float
    busy: Mapping[str, int] = field(default_factory=dict)
    down: tuple[str, ...] = ()
    inflight: int = 0

    def describe(self) -> str:
        """One progress line: what was waited for and how it ended."""
        what = "every worker's queue and executions 0, gateway in-flight 0"
        if self.idle:
            text = f"fleet idle after {self.waited_s:.1f} s ({what})"
        else:
            held = ", ".join(f"{w} {n}" for w, n in sorted(self.busy.items())) or "none"
            text = (
                f"fleet not idle after {self.waited_s:.1f} s: workers still holding requests: "
                f"{held}; gateway in-flight {self.inflight}"
            )
        if self.down:
            text += f"; down: {', '.join(self.down)}"
        return text


def wait_idle(
    backlog: Callable[[], Mapping[str, int]],
    timeout_s: float,
    *,
    inflight: Callable[[], int] | None = None,
    poll_s: float = 0.1,
    cancelled: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Idle:
    """Poll until the fleet and the gateway hold nothing (twice in a row), or ``timeout_s``.

    Args:
        backlog: worker -> requests held now (-1: not answering), e.g. ``Fleet.backlog``.
        timeout_s: the longest wait.
        inflight: the gateway's requests in flight now (default: none to wait for).
        poll_s: seconds between polls.
        cancelled: polled too; when it turns true the wait ends at once (not idle).
        clock: monotonic seconds.
        sleep: how to wait ``poll_s`` (injected for tests).
    """
    t0 = clock()
    streak = 0
    while True:
        held = backlog()
        busy = {w: n for w, n in held.items() if n > 0}
        down = tuple(sorted(w for w, n in held.items() if n < 0))
        flying = inflight() if inflight is not None else 0
        streak = streak + 1 if not busy and flying == 0 else 0
        waited = clock() - t0
        if streak >= 2:
            return Idle(True, waited, {}, down, 0)
        if waited >= timeout_s or (cancelled is not None and cancelled()):
            return Idle(False, waited, busy, down, flying)
        sleep(poll_s)
