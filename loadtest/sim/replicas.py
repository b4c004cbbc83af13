"""Several gateway replicas on one fleet, sharing per-worker load as the gateway does (Redis).

``simulate_replicas`` is :func:`loadtest.sim.engine.simulate` with ``N`` routers: each has its
own :class:`~gateway.routing.view.FleetView` and its own policy object; arrival ``i`` goes to
router ``i % N`` (round-robin, as a load balancer in front of the replicas would). The fleet
(true FIFO slots, speeds, crashes) is one, so the replicas' requests queue together.

Shared state is modelled on ``gateway/state`` and ``gateway/service.py``, with the store's
own rules (:class:`gateway.state.memory_store.MemoryStore`, which mirrors the Lua scripts):
per worker the fleet-wide ``(out, work_ms)`` and the shared shadow queue (each slot's predicted
free time, re-anchored on true ends).

* **reserve** when a router sends a request: the store books it at once (the Redis script is
  atomic; its round trip is off the request path) on the slot that frees first from its
  arrival. Its post-op figures reach the sender's view ``redis_rtt_s`` later with
  ``SharedConfig.apply_reserve`` (the gateway's ``Service._reserved``).
* **release** ``release_lag_s`` after the router saw the answer (the gateway releases in the
  background, deferred up to 2 ms to share a socket write): the figures shrink, the request's
  slot is re-anchored on its true end, and the post-op figures are applied to the releasing
  router's view (``apply_shared``), as ``Service._release`` does.
* **refresh**: every ``refresh_s`` each router reads every worker's figures
  (``SharedStateRefresher``, 100 ms by default), router ``r`` at phase ``r / N`` of the
  period, and applies them with ``observed_at`` = the read time.
* **re-decide** (``SharedConfig.redecide_ms``, issue 16.2, as ``InferenceService.confirm``:
  docs/architecture.md): with more than one router, the reserve is conditional and its reply
  awaited before the send (every request pays ``redis_rtt_s``); when the shared queue shows
  the chosen worker's wait beyond the SLO and more than ``redecide_ms`` above what the router
  predicted, the reserve books nothing, and the router applies the fresh figures and chooses
  once more, booking on the new choice (a third round trip for those requests).

A request is a violation unless answered within its SLO, exactly as in the one-router engine;
the placement on the server (FIFO slots, speed steps, crash kills and refusals) is the same
code path as :func:`loadtest.sim.engine.simulate`, only without its fast-path caching; so is
the scenario's ``overhead_ms``.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gateway.core.clock import ManualClock
from gateway.prediction.model import PredictorConfig
from gateway.routing.types import Policy, Request
from gateway.routing.view import FleetView
from gateway.scenario import Scenario
from gateway.state.memory_store import MemoryStore
from gateway.state.store import REDECIDE_MARGIN_MS, Ended, Lease, stale_limit_us
from loadtest.sim.engine import FAILED, OK, SHED, SimConfig, SimResult, _health_events
from loadtest.sim.fleet import SimTruth, build_fleet
from loadtest.sim.trace import Trace

__all__ = ["SharedConfig", "simulate_replicas"]

_FINISH, _RELEASE, _REFRESH, _HEALTH, _RESERVED = 0, 1, 2, 3, 4

COUNTS = {"awaited": 0, "redecided": 0, "moved": 0, "shed": 0}
"""Running totals over every :func:`simulate_replicas` call of this process (the benchmark
reads them around each run): requests that awaited the reserve, were decided again, then moved
to another worker, or were shed by the second decision."""


@dataclass(frozen=True, slots=True)
class SharedConfig:
    """How the replicas share state.

    Attributes:
        refresh_s: period (s) of each router's read of every worker's figures (0: never).
        release_lag_s: delay (s) between a router seeing an answer and its release landing.
        apply_reserve: also feed a reserve's post-op figures to the sender's view (as the
            gateway does), ``redis_rtt_s`` after the send.
        redis_rtt_s: a Redis round trip (s).
        redecide_ms: re-decide on the reserve's figures when they show the decision stale by
            more than this (ms) and late for the SLO (the gateway: ``REDECIDE_MARGIN_MS``);
            ``None``: off. One router never does (a lone gateway never waits).
        redecide_gate: only requests whose slack (SLO - predicted) is below this many predicted
            services await the reserve (and may re-decide); the others are sent at once.
        redecide_others: only requests to a worker where the router's figures show other
            routers' requests in flight await the reserve.
    """

    refresh_s: float = 0.1
    release_lag_s: float = 0.002
    apply_reserve: bool = True
    redis_rtt_s: float = 0.0003
    redecide_ms: float | None = REDECIDE_MARGIN_MS
    redecide_gate: float = math.inf
    redecide_others: bool = False


def simulate_replicas(
    scenario: Scenario,
    trace: Trace,
    policies: Sequence[Policy],
    seed: int,
    *,
    shared: SharedConfig | None = None,
    config: SimConfig | None = None,
    clock_ns: Callable[[], int] | None = None,
) -> SimResult:
    """Run ``len(policies)`` routers (one fresh policy object each) over ``trace``.

    Args:
        scenario: the scenario, ``time_scale`` already applied.
        trace: its arrivals; request ``i`` goes to router ``i % len(policies)``.
        policies: one fresh policy object per router (same kind).
        seed: seeds router ``r``'s RNG with ``seed + r``.
        shared: the shared-state model.
        config: simulator knobs (probe interval; decision timing).
        clock_ns: a nanosecond clock to time sampled decisions (None: no timing).
    """
    cfg = config or SimConfig()
    sh = shared or SharedConfig()
    nr = len(policies)
    fleet = build_fleet(scenario)
    infos = [w.info for w in fleet]
    overhead = scenario.overhead
    pcfg = PredictorConfig(overhead_ms=overhead.mean_ms)
    views = [FleetView(infos, scenario.profile_book, predictor=pcfg) for _ in range(nr)]
    truth = SimTruth(fleet)
    for v in views:
        v.truth = truth
    rngs = [random.Random(seed + r) for r in range(nr)]
    n = len(trace)
    status = [OK] * n
    latency = [math.nan] * n
    chosen = [-1] * n
    timings: list[int] = []
    streams = list(scenario.workload)
    by_id = {
        w.info.id: (k, w, [w.lognormal.get((x.model, x.batch)) for x in streams])
        for k, w in enumerate(fleet)
    }
    # the store: fleet-wide counts and the shared shadow queue, on the simulated clock
    sclock = ManualClock(0.0)
    store = MemoryStore(sclock, lease_ttl_s=math.inf)
    wids = [w.info.id for w in fleet]
    leases: list[Lease | None] = [None] * n
    reqs = [
        [Request(x.model, x.slo_ms, x.batch, x.priority, x.category) for x in streams]
        for _ in range(nr)
    ]
    # events: (time, seq, kind, router, payload)
    events: list[tuple[Any, ...]] = []
    for h in _health_events([(w.info.id, w.crashes) for w in fleet], cfg.probe_interval_s):
        for r in range(nr):
            events.append((h[0], h[1], _HEALTH, r, (h[2], h[3])))
    end_t = float(trace.t[-1]) if n else 0.0
    if sh.refresh_s > 0.0:
        seq_r = -(10**12)
        for r in range(nr):
            t = sh.refresh_s * (r + 1) / nr
            while t <= end_t:
                seq_r += 1
                events.append((t, seq_r, _REFRESH, r, None))
                t += sh.refresh_s
    heapq.heapify(events)
    seq = 0
    every = cfg.time_every if clock_ns is not None else 0
    countdown = 0
    ts, ss, zs = trace.t.tolist(), trace.stream.tolist(), trace.z.tolist()
    ohs = (
        [overhead.p50 / 1000.0] * n
        if trace.overhead_ms is None
        else (trace.overhead_ms / 1000.0).tolist()
    )
    dvs = [0.0] * n if trace.device_ms is None else (trace.device_ms / 1000.0).tolist()
    exp, bisect_right = math.exp, bisect.bisect_right
    wall0 = clock_ns() if clock_ns is not None else 0

    def deliver(ev: tuple[Any, ...]) -> None:
        nonlocal seq
        t, _, kind, r, p = ev
        view = views[r]
        if kind == _FINISH:
            wid, s, model, memo, svc, lat, i, end = p
            view.finish_state(s, model, memo, svc, lat, t)
            seq += 1
            heapq.heappush(events, (t + sh.release_lag_s, seq, _RELEASE, r, (i, end)))
        elif kind == _RELEASE:
            i, end = p
            lease = leases[i]
            leases[i] = None
            if lease is None:
                return
            sclock.t = t
            ended = Ended() if end is None else Ended(ago_us=round((t - end) * 1e6))
            load = store.release_now(lease, ended)
            view.apply_shared(lease.worker, load.outstanding, load.work_ms, t, load.free_ms)
        elif kind == _RESERVED:
            i, load = p
            if leases[i] is not None:  # skipped once the request ended (Service._reserved)
                view.apply_shared(leases[i].worker, load.outstanding, load.work_ms, t, load.free_ms)
        elif kind == _REFRESH:
            sclock.t = t
            for wid, load in store.snapshot_now(wids).items():
                view.apply_shared(wid, load.outstanding, load.work_ms, t, load.free_ms)
        else:
            view.set_healthy(p[0], p[1], t)

    for i in range(n):
        t = ts[i]
        while events and events[0][0] <= t:
            deliver(heapq.heappop(events))
        r = i % nr
        view = views[r]
        si = ss[i]
        req = reqs[r][si]
        req.arrival = t
        truth.z = zs[i]
        view.advance(t)
        oh = truth.oh_s = ohs[i]
        dv = truth.dv_s = dvs[i]
        if every and countdown == 0:
            t0 = clock_ns()  # type: ignore[misc]
            d = policies[r].choose(req, view, t, rngs[r])
            timings.append(clock_ns() - t0)  # type: ignore[misc]
        else:
            d = policies[r].choose(req, view, t, rngs[r])
        countdown = (countdown - 1) % every if every else 0
        wid = d.worker
        t_send = t
        booked: Lease | None = None
        if (
            wid is not None
            and sh.redecide_ms is not None
            and nr > 1
            and math.isfinite(d.predicted_ms)
            and req.slo_ms - d.predicted_ms < sh.redecide_gate * d.service_ms
            and (not sh.redecide_others or view.state(wid).out - view.state(wid).local_out > 0.5)
        ):
            # a conditional reserve on the chosen worker, its reply awaited before the send
            t_send = t + sh.redis_rtt_s
            COUNTS["awaited"] += 1
            sv = view.state(wid)
            lease = Lease(
                wid,
                str(i),
                round(d.service_ms * 1000.0),
                max(1, sv.instances),
                round(sv.rtt_ms * 500.0),
                stale_limit_us(d.predicted_ms, d.service_ms, req.slo_ms, sv.rtt_ms, sh.redecide_ms),
            )
            sclock.t = t
            load = store.reserve_now(lease)
            if load.booked:
                booked = lease
            else:
                COUNTS["redecided"] += 1
                view.apply_shared(wid, load.outstanding, load.work_ms, t, load.free_ms)
                view.advance(t_send)
                d = policies[r].choose(req, view, t_send, rngs[r])
                COUNTS["moved"] += d.worker is not None and d.worker != wid
                COUNTS["shed"] += d.worker is None
                wid = d.worker
        if wid is None:
            status[i] = SHED
            continue
        k, w, lns = by_id[wid]
        chosen[i] = k
        svc = d.service_ms if math.isfinite(d.service_ms) else 0.0
        s = view.state(wid)
        memo = view.start_state(s, req.model, req.batch, d.service_ms, t_send)
        sclock.t = t_send
        if booked is None:
            lease = Lease(
                wid, str(i), round(svc * 1000.0), max(1, w.info.instances), round(s.rtt_ms * 500.0)
            )
            load = store.reserve_now(lease)
        else:
            lease = booked
        leases[i] = lease
        if sh.apply_reserve:
            if sh.redis_rtt_s > 0.0:
                seq += 1
                heapq.heappush(events, (t_send + sh.redis_rtt_s, seq, _RESERVED, r, (i, load)))
            else:
                view.apply_shared(wid, load.outstanding, load.work_ms, t_send, load.free_ms)
        seq += 1
        rtt_s = w.rtt_s + oh
        a = t_send + rtt_s * 0.5
        if a >= w.next_tr:
            w.advance(a)
        tc = w.next_tc
        lat: float | None = None
        end_at: float | None = None
        if tc <= a:  # down: refused
            status[i] = FAILED
            ev_t = t_send + rtt_s
        else:
            slots = w.slots
            s0 = slots[0]
            begin = a if a > s0 else s0
            mu, sigma = lns[si]
            end = (
                begin
                + exp(mu + sigma * zs[i]) * w.speed_f[bisect_right(w.speed_t, begin) - 1] / 1000.0
                + dv
            )
            heapq.heapreplace(slots, end)
            if end > tc:  # killed by the crash at tc
                status[i] = FAILED
                ev_t = tc + rtt_s * 0.5
            else:
                lat = (end - t) * 1000.0 + w.rtt_half_ms + oh * 500.0
                latency[i] = lat
                ev_t = t + lat / 1000.0
                end_at = end
        seen = lat if lat is None or t_send == t else lat - (t_send - t) * 1000.0  # from the send
        heapq.heappush(
            events, (ev_t, seq, _FINISH, r, (wid, s, req.model, memo, svc, seen, i, end_at))
        )
    wall = ((clock_ns() - wall0) / 1e9) if clock_ns is not None else math.nan
    return SimResult(
        policies[0].name if nr else "",
        np.asarray(status, dtype=np.int8),
        np.asarray(latency, dtype=np.float64),
        np.asarray(chosen, dtype=np.int32),
        np.asarray(timings, dtype=np.int64),
        wall,
    )


SHIPPED = ("demo", "edge-cloud", "bursts-priority", "drift-crash", "fleet-200")
"""The shipped scenarios of the replicas benchmark (``loadtest/scenarios/<name>.yaml``)."""


def _members(which: str, count: int) -> list[Scenario]:
    if which == "shipped":
        from pathlib import Path

        from gateway.scenario import load_scenario

        root = Path(__file__).resolve().parent.parent / "scenarios"
        return [load_scenario(root / f"{n}.yaml") for n in SHIPPED]
    from loadtest.sim.suite import suite_scenarios

    return [sc for sc, _ in suite_scenarios(which, count)]


def bench(
    which: str,
    routers: Sequence[int],
    policy: str = "synergai",
    count: int = 20,
    shared: SharedConfig | None = None,
) -> dict[str, Any]:
    """Violations per scenario and router count (1 router: the one-router engine)."""
    from loadtest.sim import replicas as live  # the module the runner calls (not __main__)
    from loadtest.sim.runner import run_scenario

    rows: list[dict[str, Any]] = []
    for sc in _members(which, count):
        row: dict[str, Any] = {"scenario": sc.name, "routers": {}}
        for nr in routers:
            before = dict(live.COUNTS)
            run = run_scenario(sc, [policy], routers=nr, shared=shared if nr > 1 else None)
            doc = run.document["policies"][policy]
            counts = {k: v - before[k] for k, v in live.COUNTS.items()}
            row["requests"] = doc["requests"]
            row["routers"][str(nr)] = {
                "violations": doc["slo_violations"],
                "shed": doc["shed"],
                "violation_rate": doc["violation_rate"],
                **(counts if shared is not None and shared.redecide_ms is not None else {}),
            }
        rows.append(row)
    total = {
        str(nr): {
            "violations": sum(r["routers"][str(nr)]["violations"] for r in rows),
            "shed": sum(r["routers"][str(nr)]["shed"] for r in rows),
        }
        for nr in routers
    }
    req = sum(r["requests"] for r in rows)
    for t in total.values():
        t["violation_rate"] = t["violations"] / req if req else 0.0
    one = total[str(routers[0])]["violation_rate"]
    verdict = {k: v["violation_rate"] <= 1.1 * one + 0.003 for k, v in total.items() if k != "1"}
    return {
        "set": which,
        "policy": policy,
        "shared": asdict(shared or SharedConfig()),
        "requests": req,
        "scenarios": rows,
        "total": total,
        "within_target": verdict,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtest.sim.replicas [--set shipped|random-dev] [--routers 1 2 4 8]``."""
    import argparse
    import json
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--set", default="shipped", choices=["shipped", "random-dev", "random-test"])
    ap.add_argument("--routers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--policy", default="synergai")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument(
        "--redecide-ms",
        type=float,
        default=REDECIDE_MARGIN_MS,
        help="re-decide once on the reserve's figures when stale by more than this (ms) and "
        "late for the SLO (issue 16.2; every request then awaits the reserve); default: the "
        "gateway's",
    )
    ap.add_argument(
        "--no-redecide", action="store_true", help="off: the router sends without awaiting"
    )
    ap.add_argument(
        "--redecide-gate",
        type=float,
        default=math.inf,
        help="with --redecide-ms: only requests with slack < this many services await the reserve",
    )
    ap.add_argument(
        "--redecide-others",
        action="store_true",
        help="with --redecide-ms: only requests to a worker busy with others' requests wait",
    )
    ap.add_argument(
        "--refresh-s", type=float, default=0.1, help="each router's periodic read (s; 0: never)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    shared = SharedConfig(
        refresh_s=args.refresh_s,
        redecide_ms=None if args.no_redecide else args.redecide_ms,
        redecide_gate=args.redecide_gate,
        redecide_others=args.redecide_others,
    )
    out = bench(args.set, args.routers, args.policy, args.count, shared)
    out["load_average"] = os.getloadavg()
    names = [str(r) for r in args.routers]
    print(f"{'scenario':18s} {'requests':>9s} " + " ".join(f"{n + ' rt':>16s}" for n in names))
    for r in [
        *out["scenarios"],
        {"scenario": "TOTAL", "requests": out["requests"], "routers": out["total"]},
    ]:
        cells = " ".join(
            f"{r['routers'][n]['violation_rate']:7.2%} ({r['routers'][n]['shed']:5d})"
            for n in names
        )
        print(f"{r['scenario']:18s} {r['requests']:9d} {cells}")
    print(f"within 1.1x + 0.3 pt of 1 router: {out['within_target']}; load {out['load_average']}")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
