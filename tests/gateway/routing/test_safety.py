"""The safety property of ``synergai`` (docs/routing.md, Safety), on random fleets and loads.

A request that fits somewhere (tail <= SLO) is only sent where it fits, or to earliest
completion when that is on time on average (predicted <= SLO), except by an explicit yield to a
higher priority; it is shed only when it fits nowhere (``shed_slo``, ``shed_saturated``) or, at
priority 0, to make way for a higher priority (``shed_yield``).
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.prediction.profiles import LatencyPoint, Profile, ProfileBook
from gateway.routing.policies.synergai import SynergAI
from gateway.routing.predict import pool_estimates
from gateway.routing.types import Request, WorkerInfo
from gateway.routing.view import FleetView

MODELS = ("a", "b", "c")


@st.composite
def fleets(draw: st.DrawFn) -> tuple[FleetView, list[Request], int]:
    n_pools = draw(st.integers(2, 4))
    profiles: dict[tuple[str, str], Profile] = {}
    workers: list[WorkerInfo] = []
    for p in range(n_pools):
        arch = f"arch{p}"
        served = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True))
        for m in served:
            p50 = draw(st.floats(0.5, 30.0))
            profiles[(arch, m)] = Profile(
                arch, m, 8, (LatencyPoint(1, p50, p50 * draw(st.floats(1.05, 2.5))),)
            )
        rtt = draw(st.floats(0.5, 40.0))
        k = draw(st.integers(1, 4))
        for w in range(draw(st.integers(1, 6))):
            workers.append(WorkerInfo(f"p{p}w{w}", f"pool{p}", arch, tuple(served), k, rtt))
    view = FleetView(workers, ProfileBook(profiles, {}))
    for w in workers:  # random queues, some calibrated corrections
        for _ in range(draw(st.integers(0, 4))):
            view.start(w.id, Request(w.models[0], 1e6), draw(st.floats(0.0, 40.0)), 0.0)
    reqs = [
        Request(
            draw(st.sampled_from(MODELS)),
            draw(st.floats(2.0, 150.0)),
            1,
            draw(st.integers(0, 2)),
        )
        for _ in range(draw(st.integers(1, 25)))
    ]
    return view, reqs, draw(st.integers(0, 2**16))


@settings(max_examples=150, deadline=None)
@given(fleets(), st.sampled_from(["off", "on", "tripped"]))
def test_a_request_that_fits_is_only_sent_where_it_fits(
    case: tuple[FleetView, list[Request], int], check: str
) -> None:
    view, reqs, seed = case
    pol = SynergAI(explore=0.05, seed=seed, self_check=check != "off")
    if check == "tripped":  # deviations switched off: earliest completion
        assert pol.check is not None
        pol.check.all.off_until = float("inf")
    rng = random.Random(seed)
    now = 0.0
    for req in reqs:
        now += 0.0005
        ests = pool_estimates(view, req.model, req.batch, now)
        d = pol.choose(req, view, now, rng)
        fits = {e.state.id for e in ests if e.tail_ms <= req.slo_ms}
        higher = any(p > req.priority for p in pol.priority.values())
        if d.worker is None:
            assert d.reason in ("no_worker", "shed_slo", "shed_saturated", "shed_yield")
            if d.reason in ("shed_slo", "shed_saturated"):
                assert not fits
            if d.reason == "shed_yield":  # an explicit yield of a fit (priority 0), or a
                # hopeless request making way for a higher priority of its own model
                top = pol.priority.get(req.model, 0)
                assert (req.priority == 0 and higher) or (not fits and req.priority < top)
            continue
        if fits and d.worker not in fits:  # earliest completion, on time on average, or a yield
            ec = min(e.predicted_ms for e in ests)
            chosen = next(e for e in ests if e.state.id == d.worker)
            on_time_ec = chosen.predicted_ms == ec and ec <= req.slo_ms
            assert on_time_ec or (d.reason == "yield" and higher), (d, req)
        view.start(d.worker, req, d.service_ms, now)
