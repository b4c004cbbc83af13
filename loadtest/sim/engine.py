"""The discrete-event loop: one policy, one trace, one fleet; the router learns in time order.

For each arrival, in time order: first every router-visible event due by then is delivered
to the view (completions with the latency measured at the client, failures, health-probe
verdicts), then the policy chooses with the arrival time as ``now``, then the request is
placed on the chosen server's slots (:mod:`loadtest.sim.fleet`) and its outcome is known at
once to the simulator, but reaches the router only when it happens:

* success: ``finish(latency)`` at ``arrival + latency`` (``latency`` includes the pool rtt);
* killed by a crash at ``tc``: ``finish(None)`` at ``tc + rtt / 2``;
* refused by a server that is down: ``finish(None)`` one rtt after it was sent;
* health probes every ``probe_interval_s``: a crashed server is reported unhealthy at the
  first probe after the crash and healthy at the first probe after its restart.

A request is a violation unless answered successfully within its SLO (late, shed and failed
all count).

The scenario's ``overhead_ms`` (the live path's fixed cost per request, unscaled) is spent like
the rtt: half before the request reaches the server's slots, half after it leaves them; the
router's view is told its mean (``PredictorConfig.overhead_ms``), as a live gateway is by its
``overhead_ms`` setting. Its ``device`` part is added to the request's time on its slot. With
none (the default) every figure is the same as without it.

Hot path (DESIGN.md §10): the loop calls the very policy object the gateway runs; around it,
per request, only a few list and attribute reads: one reusable :class:`Request` per workload
stream, the view's :meth:`~gateway.routing.view.FleetView.start_state` /
:meth:`~gateway.routing.view.FleetView.finish_state` with the memo carried in the event tuple
``(time, seq, state, model, memo, service_ms, latency_ms)`` (no per-request dictionary), the
crash window cached on the worker, and the next event time cached so the heap is touched only
when something is due. ``docs/benchmarks.md`` (Simulator performance) has the figures.

The router's clock and RNG are injected; the only wall clock here is the optional
``clock_ns`` used to time sampled decisions of the real policy code.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.prediction.model import PredictorConfig
from gateway.routing.state import WorkerState
from gateway.routing.types import Policy, Request
from gateway.routing.view import FleetView
from gateway.scenario import Scenario
from loadtest.sim.fleet import SimTruth, SimWorker, build_fleet
from loadtest.sim.trace import Trace

__all__ = ["FAILED", "OK", "SHED", "SimConfig", "SimResult", "simulate"]

OK, SHED, FAILED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Simulator knobs.

    Attributes:
        probe_interval_s: health-probe period (s) of the router's runner.
        time_every: time one decision in this many (0: none) with ``clock_ns``.
    """

    probe_interval_s: float = 1.0
    time_every: int = 8


@dataclass(frozen=True, slots=True)
class SimResult:
    """Per-request outcomes of one policy on one trace (arrays aligned with the trace)."""

    policy: str
    status: npt.NDArray[np.int8]
    latency_ms: npt.NDArray[np.float64]
    worker: npt.NDArray[np.int32]
    decision_ns: npt.NDArray[np.int64]
    wall_s: float


def _health_events(
    fleet_crashes: list[tuple[str, list[tuple[float, float]]]], probe: float
) -> list[tuple[float, int, str, bool]]:
    out = []
    seq = -1
    for wid, windows in fleet_crashes:
        for tc, tr in windows:
            seq -= 1
            out.append((math.floor(tc / probe + 1.0) * probe, seq, wid, False))
            if math.isfinite(tr):
                seq -= 1
                out.append((math.ceil(tr / probe) * probe, seq, wid, True))
    return out


def simulate(
    scenario: Scenario,
    trace: Trace,
    policy: Policy,
    seed: int,
    *,
    config: SimConfig | None = None,
    clock_ns: Callable[[], int] | None = None,
) -> SimResult:
    """Run ``policy`` over ``trace`` on a fresh fleet and view of ``scenario`` (scaled).

    Args:
        scenario: the scenario, ``time_scale`` already applied.
        trace: its arrivals (:func:`loadtest.sim.trace.build_trace`).
        policy: a fresh policy object (the registry's, the same the gateway runs).
        seed: seeds the policy's RNG.
        config: simulator knobs.
        clock_ns: a nanosecond clock to time sampled decisions (None: no timing).
    """
    cfg = config or SimConfig()
    fleet = build_fleet(scenario)
    overhead = scenario.overhead
    view = FleetView(
        [w.info for w in fleet],
        scenario.profile_book,
        predictor=PredictorConfig(overhead_ms=overhead.mean_ms),
    )
    truth = SimTruth(fleet)
    view.truth = truth
    rng = random.Random(seed)
    n = len(trace)
    status = [OK] * n
    latency = [math.nan] * n
    chosen = [-1] * n
    timings: list[int] = []
    streams = list(scenario.workload)
    # per worker id: (index, worker, its view state, per-stream (mu, sigma) of its true service,
    # (nan, nan) for a stream it cannot serve: no policy sends one there)
    nolog = (math.nan, math.nan)
    by_id: dict[str, tuple[int, SimWorker, WorkerState, list[tuple[float, float]]]] = {
        w.info.id: (
            k,
            w,
            view.state(w.info.id),
            [w.lognormal.get((x.model, x.batch), nolog) for x in streams],
        )
        for k, w in enumerate(fleet)
    }
    # one reusable Request per stream: policies read it during ``choose`` and keep nothing
    reqs = [Request(x.model, x.slo_ms, x.batch, x.priority, x.category) for x in streams]
    # events: (time, seq, state, model, memo, service_ms, latency_ms) for a finish,
    # (time, seq, None, worker id, healthy, 0.0, None) for a health verdict; seq breaks ties
    events: list[tuple[Any, ...]] = []
    for h in _health_events([(w.info.id, w.crashes) for w in fleet], cfg.probe_interval_s):
        heapq.heappush(events, (h[0], h[1], None, h[2], h[3], 0.0, None))
    heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace
    choose, bisect_right = policy.choose, bisect.bisect_right
    # the view's methods are called on the view (compiled: a direct C call; a bound method
    # kept in a local would go through Python's calling convention on every request)
    every = cfg.time_every if clock_ns is not None else 0
    countdown = 0
    # typed: compiled (gateway.native), the loop's arithmetic is then on C doubles
    ts: list[float] = trace.t.tolist()
    ss: list[int] = trace.stream.tolist()
    zs: list[float] = trace.z.tolist()
    # the live path's fixed cost (s): a constant, or one per request (None)
    oc: float = overhead.p50 / 1000.0 if trace.overhead_ms is None else 0.0
    ohs: list[float] | None = (
        None if trace.overhead_ms is None else (trace.overhead_ms / 1000.0).tolist()
    )
    oh: float = oc
    truth.oh_s = oc
    # its device part (s): extra time on the slot, per request (None: none)
    dvs: list[float] | None = (
        None if trace.device_ms is None else (trace.device_ms / 1000.0).tolist()
    )
    dv: float = 0.0
    seq = 0
    nxt: float = events[0][0] if events else math.inf
    wall0 = clock_ns() if clock_ns is not None else 0
    gc_was = gc.isenabled()
    gc.disable()  # the loop allocates only acyclic tuples; cyclic GC passes are pure cost
    try:
        for i in range(n):
            t = ts[i]
            if nxt <= t:
                while events and events[0][0] <= t:
                    ev = heappop(events)
                    if ev[2] is not None:
                        view.finish_state(ev[2], ev[3], ev[4], ev[5], ev[6], ev[0])
                    else:
                        view.set_healthy(ev[3], ev[4], ev[0])
                nxt = events[0][0] if events else math.inf
            si = ss[i]
            req = reqs[si]
            req.arrival = t
            z = zs[i]
            truth.z = z
            view.advance(t)
            if ohs is not None:
                oh = ohs[i]
                truth.oh_s = oh
            if dvs is not None:
                dv = dvs[i]
                truth.dv_s = dv
            if every:
                if countdown == 0:
                    countdown = every
                    t0 = clock_ns()  # type: ignore[misc]
                    d = choose(req, view, t, rng)
                    timings.append(clock_ns() - t0)  # type: ignore[misc]
                else:
                    d = choose(req, view, t, rng)
                countdown -= 1
            else:
                d = choose(req, view, t, rng)
            wid = d.worker
            if wid is None:
                status[i] = SHED
                continue
            k, w, s, lns = by_id[wid]
            chosen[i] = k
            svc = d.service_ms
            model = req.model
            memo = view.start_state(s, model, req.batch, svc, t)
            seq += 1
            rtt_s = w.rtt_s + oh
            a = t + rtt_s * 0.5
            if a >= w.next_tr:
                w.advance(a)
            tc = w.next_tc
            if tc <= a:  # down: refused
                status[i] = FAILED
                ev_t = t + rtt_s
            else:
                slots = w.slots
                s0 = slots[0]
                begin = a if a > s0 else s0
                mu, sigma = lns[si]
                speed_t = w.speed_t
                f = (
                    w.speed_f[bisect_right(speed_t, begin) - 1]
                    if len(speed_t) > 1
                    else w.speed_f[0]
                )
                end = begin + math.exp(mu + sigma * z) * f / 1000.0 + dv
                heapreplace(slots, end)
                if end > tc:  # killed by the crash at tc
                    status[i] = FAILED
                    ev_t = tc + rtt_s * 0.5
                else:
                    lat = (end - t) * 1000.0 + w.rtt_half_ms + oh * 500.0
                    latency[i] = lat
                    ev = (t + lat / 1000.0, seq, s, model, memo, svc, lat)
                    heappush(events, ev)
                    if ev[0] < nxt:
                        nxt = ev[0]
                    continue
            heappush(events, (ev_t, seq, s, model, memo, svc, None))
            if ev_t < nxt:
                nxt = ev_t
    finally:
        if gc_was:
            gc.enable()
    wall = ((clock_ns() - wall0) / 1e9) if clock_ns is not None else math.nan
    return SimResult(
        policy.name,
        np.asarray(status, dtype=np.int8),
        np.asarray(latency, dtype=np.float64),
        np.asarray(chosen, dtype=np.int32),
        np.asarray(timings, dtype=np.int64),
        wall,
    )
