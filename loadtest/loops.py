"""The two ways to load a system with :mod:`loadtest.client`: open loop and closed loop.

* :func:`replay`, **open loop**: an arrival never waits for an earlier response: request ``i``
  is sent at ``t0 + trace[i].t_s`` whatever happened before, so a slow policy cannot slow its own
  load down (no coordinated omission). Latency is measured from the *scheduled* send time to the
  end of the response, so time lost waiting for a free connection or for the client's own event
  loop counts against the request, as a real client would see it; :attr:`Outcome.lag_ms`
  (actual send minus scheduled send) shows how much of that was the client itself. Requests are
  spread over the targets (gateway replicas) round robin in trace order, so each replica sees
  the same share of every stream. Used by ``synergai bench`` and the demo.
* :func:`closed_loop`: ``concurrency`` clients, each sending its next request when the last one
  answered, optionally failing over between targets. Used by ``synergai bench overhead``, the
  shared-state and gRPC comparisons and the replica tests; :func:`interleaved` runs A/B
  comparisons of several targets in alternating rounds.

One asyncio loop drives everything.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from loadtest.client import Arrival, Outcome, Payloads, Protocol, hints, open_sender

__all__ = ["ClosedLoopResult", "closed_loop", "connections_for", "interleaved", "replay"]

K = TypeVar("K", bound=Hashable)
"""The key naming a target of :func:`interleaved`."""


def connections_for(trace: Sequence[Arrival], timeout_s: float, cap: int = 2048) -> int:
    """Connections enough for the trace even when the system under test stalls.

    ``N = clamp(peak_rps x timeout_s + 16, 16, cap)``, where ``peak_rps`` is the largest number
    of arrivals in any one-second window: the most requests that can be in flight at once
    before the client gives up on them. A smaller pool would make the *client* a shared queue:
    when one overloaded worker holds every connection, requests for healthy workers would wait
    for a connection, and a bad policy would look worse than it is (head-of-line blocking the
    simulator does not have).

    Args:
        trace: the arrivals.
        timeout_s: the client's per-request timeout.
        cap: the largest pool (file descriptors).
    """
    if not trace:
        return 16
    times = sorted(a.t_s for a in trace)
    peak, j = 1, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    n = math.ceil(peak * timeout_s) + 16
    return max(16, min(cap, n))


async def replay(
    trace: Sequence[Arrival],
    targets: Sequence[str],
    protocol: Protocol = "http",
    *,
    connections: int | None = None,
    timeout_s: float = 10.0,
    payloads: Payloads | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Outcome]:
    """Send every arrival at its time, open loop, and return one outcome per arrival.

    Args:
        trace: arrivals sorted by ``t_s`` (real seconds after the start).
        targets: base URLs (``http://h:p``) for ``http``; ``host:port`` for ``grpc``.
        protocol: ``http`` or ``grpc``.
        connections: HTTP connection pool size (default :func:`connections_for`).
        timeout_s: a request not answered after this long is ``lost``.
        payloads: body cache to reuse between replays.
        on_progress: called as ``(done, total)`` roughly every 2% of the trace.
        on_start: called once, just before the first send, with the ``time.time()`` epoch
            of the trace's t=0 (so a fleet can start its fault clock on the same origin).
        clock: monotonic seconds (injected for tests).

    Returns:
        Outcomes in trace order.
    """
    payloads = payloads or Payloads()
    conns = connections or connections_for(trace, timeout_s)
    sender = open_sender(protocol, targets, payloads, timeout_s, conns=conns)
    for a in trace:  # build bodies before the clock starts
        if protocol == "http":
            payloads.json_body(a.model, a.batch)
        else:
            payloads.grpc_request(a.model, a.batch)

    total = len(trace)
    outcomes: list[Outcome | None] = [None] * total
    done = 0
    step = max(1, total // 50)
    n_targets = len(targets)

    async def one(i: int, a: Arrival, due: float) -> None:
        nonlocal done
        sent = clock()
        target = i % n_targets
        try:
            status, code, worker, predicted = await sender.send(
                a.model, a.batch, hints(a), target, 0
            )
        except Exception as exc:
            status, code, worker, predicted = "error", type(exc).__name__, "", math.nan
        end = clock()
        outcomes[i] = Outcome(
            status=status,
            latency_ms=(end - due) * 1000.0,
            lag_ms=max(0.0, (sent - due) * 1000.0),
            code=code,
            worker=worker,
            target=target,
            predicted_ms=predicted,
            start_s=due,
            end_s=end,
        )
        done += 1
        if on_progress is not None and (done % step == 0 or done == total):
            on_progress(done, total)

    await sender.open()
    tasks: list[asyncio.Task[None]] = []
    t0 = clock() + 0.05
    try:
        if on_start is not None:
            on_start(time.time() + (t0 - clock()))
        for i, a in enumerate(trace):
            due = t0 + a.t_s
            delay = due - clock()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, a, due)))
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s + 5.0)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()
    return [
        o
        if o is not None
        else Outcome(status="lost", latency_ms=timeout_s * 1000.0, start_s=t0 + a.t_s)
        for o, a in zip(outcomes, trace, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class ClosedLoopResult:
    """What a closed-loop run measured.

    Attributes:
        concurrency: clients, each sending its next request when the last one answered.
        seconds: measured wall time (after warm-up).
        outcomes: every request *started* in the measured window, in completion order.
        warm: requests started during the warm-up (not in ``outcomes``).
    """

    concurrency: int
    seconds: float
    outcomes: list[Outcome]
    warm: int = 0

    @property
    def latencies_ms(self) -> list[float]:
        """Latency of every successful request in the measured window."""
        return [o.latency_ms for o in self.outcomes if o.status == "ok"]

    @property
    def errors(self) -> int:
        """Requests in the measured window that were not answered successfully."""
        return sum(1 for o in self.outcomes if o.status != "ok")

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0


_NOT_DELIVERED = frozenset({"", "UNAVAILABLE"})
"""Codes of a request that never reached a live server (refused connection, no channel)."""


async def closed_loop(
    targets: str | Sequence[str],
    protocol: Protocol,
    concurrency: int,
    duration_s: float,
    *,
    model: str,
    warmup_s: float = 0.5,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    dead: set[int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    width: int = 4,
) -> ClosedLoopResult:
    """``concurrency`` clients in a loop for ``warmup_s + duration_s``, back to back.

    Client ``i`` sends to target ``i % len(targets)``, over its own keep-alive connection (HTTP:
    a pool of ``concurrency``) or its own channel (gRPC). Requests that *start* during the
    warm-up are counted in ``warm`` only; the measured window is ``duration_s`` long.

    Args:
        targets: one or several ``http://h:p`` (or ``h:p`` for gRPC) gateways or servers.
        protocol: ``http`` or ``grpc``.
        concurrency: number of clients.
        duration_s: measured seconds.
        model: model to call (batch 1, the tiny tensor of :class:`Payloads`).
        warmup_s: unmeasured seconds first.
        headers: hints or other headers (gRPC metadata) on every request.
        timeout_s: per-request timeout (a request not answered by then is ``lost``).
        dead: fail-over: targets known dead. A client whose target refuses a connection adds
            it here and moves to a live one (the caller may add to it too); when every target
            is dead the clients stop. ``None``: no fail-over, a refusal is just an error.
        clock: monotonic seconds (``start_s``/``end_s`` of the outcomes are on it).
        width: FP32 elements per item of the input tensor (:class:`Payloads`; 262,144 = 1 MiB).
    """
    names = [targets] if isinstance(targets, str) else list(targets)
    meta = tuple((headers or {}).items())
    sender = open_sender(
        protocol, names, Payloads(width=width), timeout_s, conns=concurrency, lanes=concurrency
    )
    measured: list[Outcome] = []
    warm = 0
    t_measure = clock() + warmup_s
    t_end = t_measure + duration_s

    async def client(i: int) -> None:
        nonlocal warm
        g = i % len(names)
        while True:
            if dead is not None and g in dead:
                alive = [j for j in range(len(names)) if j not in dead]
                if not alive:
                    return
                g = alive[i % len(alive)]
            t = clock()
            if t >= t_end:
                return
            status, code, worker, predicted = await sender.send(model, 1, meta, g, i)
            end = clock()
            if dead is not None and status == "error" and code in _NOT_DELIVERED:
                dead.add(g)
            if t < t_measure:
                warm += 1
                continue
            measured.append(
                Outcome(status, (end - t) * 1000.0, code=code, worker=worker, target=g,
                        predicted_ms=predicted, start_s=t, end_s=end)
            )  # fmt: skip

    await sender.open()
    try:
        await asyncio.gather(*(client(i) for i in range(concurrency)))
    finally:
        await sender.close()
    seconds = max(1e-9, min(clock(), t_end) - t_measure)
    return ClosedLoopResult(concurrency, seconds, measured, warm)


def interleaved(
    targets: Sequence[tuple[K, Protocol, str]],
    concurrency: int,
    duration_s: float,
    rounds: int,
    *,
    model: str,
    warmup_s: float = 0.5,
    say: Callable[[str], None] | None = None,
) -> dict[K, ClosedLoopResult]:
    """Closed loops over several targets in ``rounds`` rounds, each round visiting every target.

    To keep drift (CPU frequency, a noisy neighbour) out of an A/B comparison, no target gets
    all its time first: round ``r`` runs ``duration_s`` on each target in turn, and the rounds'
    outcomes, seconds and warm-up counts are pooled per target. Each run has its own event loop
    and connections (nothing carried from one target to the next).

    Args:
        targets: ``(key, protocol, url)``; the key names the target in the result.
        concurrency: closed-loop clients per run.
        duration_s: measured seconds per run (per target and round).
        rounds: runs per target.
        model: model to call.
        warmup_s: unmeasured seconds before each run.
        say: progress lines.

    Returns:
        key -> the pooled result (``seconds``: measured seconds over all its rounds).
    """
    pooled: dict[K, ClosedLoopResult] = {}
    for r in range(rounds):
        for key, protocol, url in targets:
            if say is not None:
                say(f"concurrency {concurrency}, round {r + 1}/{rounds}: {key}")
            res = asyncio.run(
                closed_loop(url, protocol, concurrency, duration_s, model=model, warmup_s=warmup_s)
            )
            old = pooled.get(key)
            if old is not None:
                res = ClosedLoopResult(
                    concurrency,
                    old.seconds + res.seconds,
                    old.outcomes + res.outcomes,
                    old.warm + res.warm,
                )
            pooled[key] = res
    return pooled
