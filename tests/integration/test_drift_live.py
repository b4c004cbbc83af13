"""Drift end to end: a real Triton worker slowed 3x is flagged, and profiles are re-learned.

Two real Triton servers of two emulated architectures (one worker each, so an architecture's
observed times are one worker's), every profile ``p50 = p99 = 20 ms``; the real gateway app on
uvicorn (embedded Valkey), round robin so both workers keep getting traffic; two closed-loop
HTTP clients on loopback (with 10 ms profiles and three clients, the transport overhead of a
busy 2-vCPU box alone reads as a 1.25-1.35 ratio: see docs/drift.md). Worker ``b-0`` is slowed
3x through the fleet's control channel: the drift must show in ``/synergai/v1/workers`` and in
``/metrics`` within seconds while ``a-0`` stays clean; ``run_profile_from_live`` must write a
``toy-b`` profile near 60 ms at p50; back at 1x, the flag must clear.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.prediction.drift import HOLD_S, run_profile_from_live
from gateway.prediction.profiles import load_profiles
from gateway.server import ServerThread
from gateway.testing import fleet_settings
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MS = 20.0
SLOW = 3.0
BODY = orjson.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)


@pytest.fixture(scope="module")
def stack(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("drift")
    pool = {"workers": 1, "instances": 4, "rtt_ms": 0, "models": ["m1"]}
    scenario = write_scenario(
        directory,
        pools=[{"name": "a", "arch": "toy-a", **pool}, {"name": "b", "arch": "toy-b", **pool}],
        profiles={(arch, "m1"): {1: (MS, MS), 8: (MS, MS)} for arch in ("toy-a", "toy-b")},
    )
    workers = triton_fleet(scenario)
    settings = fleet_settings(
        workers, directory / "profiles", policy="round_robin", redis_timeout_s=0.5
    )
    server = ServerThread(create_app(settings))
    server.start()
    try:
        yield {"url": server.url, "fleet": triton_fleet.last, "dir": directory}
    finally:
        server.stop()
    assert not server._thread.is_alive()


class Load:
    """``n`` closed-loop clients posting ``m1`` until stopped."""

    def __init__(self, url: str, n: int = 2) -> None:
        self.url = url
        self.stop = threading.Event()
        self.errors = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while not self.stop.is_set():
                if c.post("/v2/models/m1/infer", content=BODY).status_code != 200:
                    self.errors += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)
        assert not any(t.is_alive() for t in self.threads)


def drift_of(c: httpx.Client) -> dict[str, dict[str, Any]]:
    rows = c.get("/synergai/v1/workers").json()["workers"]
    return {r["id"]: r.get("drift", {}).get("m1", {}) for r in rows}


def gauges(c: httpx.Client) -> dict[tuple[str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(c.get("/metrics").text):
        if fam.name in ("synergai_profile_drift", "synergai_profile_drift_ratio"):
            for s in fam.samples:
                out[(s.name, s.labels["worker"])] = s.value
    return out


def observed_total(c: httpx.Client, arch: str) -> int:
    rows = c.get("/synergai/v1/observed").json()["observed"]
    return sum(r["total"] for r in rows if r["arch"] == arch)


def wait_for(cond: Any, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


def test_slowed_worker_drifts_and_live_profile_learns_it(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    with httpx.Client(base_url=stack["url"], timeout=10) as c, Load(stack["url"]) as load:
        wait_for(lambda: all(d.get("samples", 0) >= 40 for d in drift_of(c).values()), 10)
        before = drift_of(c)
        assert set(before) == {"a-0", "b-0"}
        assert not any(d["drifting"] for d in before.values()), before
        assert all(0.8 < d["ratio"] < 1.5 for d in before.values()), before
        pre = observed_total(c, "toy-b")

        stack["fleet"].set_slowdown("b-0", SLOW)
        # drifting is flagged while the ratio still climbs towards SLOW: wait for both
        took = wait_for(lambda: (d := drift_of(c)["b-0"])["drifting"] and d["ratio"] > 2.4, 15)
        after = drift_of(c)
        g = gauges(c)
        assert g[("synergai_profile_drift", "b-0")] == 1.0
        assert g[("synergai_profile_drift", "a-0")] == 0.0
        assert 2.4 < g[("synergai_profile_drift_ratio", "b-0")] < 3.9
        assert not after["a-0"]["drifting"] and 2.4 < after["b-0"]["ratio"] < 3.9, after
        # the ring of toy-b: at least two thirds slowed samples before profiling
        wait_for(lambda: observed_total(c, "toy-b") - pre >= 2 * min(pre, 1024), 15)

        out = tmp_path / "live"
        assert run_profile_from_live(stack["url"], out) == 0
        rows = c.get("/synergai/v1/observed").json()["observed"]
        stack["fleet"].set_slowdown("b-0", 1.0)
        cleared = wait_for(lambda: not drift_of(c)["b-0"]["drifting"], 15)
    assert load.errors == 0
    book = load_profiles(out)
    pb, pa = book.get("toy-b", "m1"), book.get("toy-a", "m1")
    assert pb is not None and pa is not None
    assert pb.max_batch == 8 and pb.source.startswith(
        f"observed live through the gateway at {stack['url']} on "
    )
    print(
        f"drift flagged {took:.2f} s after the 3x slowdown (ratio {after['b-0']['ratio']}), "
        f"cleared {cleared:.2f} s after recovery; live p50 toy-b {pb.p50(1):.2f} ms "
        f"(truth {MS * SLOW:g}), toy-a {pa.p50(1):.2f} ms (truth {MS:g})",
        file=sys.stderr,
    )
    print(f"observed: {rows}\nsource: {pb.source}", file=sys.stderr)
    assert HOLD_S <= took < 10.0
    assert pb.p50(1) == pytest.approx(MS * SLOW, rel=0.2)
    assert pb.p50(8) == pytest.approx(MS * SLOW, rel=0.2)  # unobserved: scaled profile
    assert pa.p50(1) == pytest.approx(MS, rel=0.3)  # + transport overhead on a loaded box
