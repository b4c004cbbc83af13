"""Drift detector, monitor, observed rings and live profiles (gateway/prediction/drift.py).

The detector is driven by an injected clock: each case is a list of segments
``(seconds, true ratio)`` replayed at a fixed sample rate with log-normal noise.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.core.clock import ManualClock
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.drift import (
    EXIT_RATIO,
    HOLD_S,
    MAX_SAMPLES,
    DriftConfig,
    DriftDetector,
    DriftMonitor,
    ServiceRing,
    quantile,
    render_live_profiles,
    run_profile_from_live,
)
from gateway.prediction.profiles import LatencyPoint, Profile, ProfileBook, load_profiles
from gateway.routing.types import WorkerInfo

P50 = 10.0


def replay(
    segments: list[tuple[float, float]], rate: float, sigma: float = 0.1, seed: int = 1
) -> list[tuple[float, bool, float]]:
    """Feed samples; return ``(t, drifting, ratio)`` after each one."""
    rng = random.Random(seed)
    det = DriftDetector()
    t = 0.0
    out = []
    for seconds, ratio in segments:
        end = t + seconds
        while t < end:
            det.add(P50 * ratio * math.exp(rng.gauss(0.0, sigma)), P50, t)
            out.append((t, det.drifting, det.ratio))
            t += 1.0 / rate
    return out


def first_flip(trace: list[tuple[float, bool, float]], after: float, to: bool) -> float | None:
    return next((t for t, d, _ in trace if t >= after and d is to), None)


# (name, segments, rate/s, drifting at the end, ever drifting)
CASES = [
    ("no drift", [(30.0, 1.0)], 20.0, False, False),
    ("no drift, noisy", [(30.0, 1.0)], 50.0, False, False),
    ("sustained 3x", [(5.0, 1.0), (15.0, 3.0)], 20.0, True, True),
    ("sustained 3x, slow traffic", [(5.0, 1.0), (20.0, 3.0)], 3.0, True, True),
    ("profile too pessimistic", [(5.0, 1.0), (15.0, 0.5)], 20.0, True, True),
    ("2 s spike, moderate rate", [(10.0, 1.0), (2.0, 3.0), (10.0, 1.0)], 20.0, False, False),
    ("2 s spike, high rate", [(10.0, 1.0), (2.0, 3.0), (10.0, 1.0)], 500.0, False, False),
    ("recovery clears", [(15.0, 3.0), (15.0, 1.0)], 20.0, False, True),
    ("hysteresis holds", [(15.0, 3.0), (15.0, 1.35)], 20.0, True, True),
    ("between thresholds never enters", [(30.0, 1.35)], 20.0, False, False),
    ("too few samples", [(5.0, 3.0)], 3.0, False, False),
]


@pytest.mark.parametrize(
    ("segments", "rate", "at_end", "ever"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_detector_cases(
    segments: list[tuple[float, float]], rate: float, at_end: bool, ever: bool
) -> None:
    trace = replay(segments, rate)
    assert trace[-1][1] is at_end
    assert any(d for _, d, _ in trace) is ever


@pytest.mark.parametrize("rate", [5.0, 20.0, 100.0, 500.0])
def test_detection_delay_matches_docstring(rate: float) -> None:
    """Flag within min(WINDOW_S * q, MAX_SAMPLES) / (2q) + HOLD_S (+ slack for evaluation)."""
    trace = replay([(12.0, 1.0), (20.0, 3.0)], rate)
    flagged = first_flip(trace, 12.0, True)
    assert flagged is not None
    bound = min(10.0 * rate, MAX_SAMPLES) / (2 * rate) + HOLD_S
    assert HOLD_S <= flagged - 12.0 <= bound + 0.6
    ratio = trace[-1][2]
    assert ratio == pytest.approx(3.0, rel=0.1)


def test_recovery_clears_after_hold() -> None:
    trace = replay([(15.0, 3.0), (15.0, 1.0)], 20.0)
    cleared = first_flip(trace, 15.0, False)
    assert cleared is not None and HOLD_S <= cleared - 15.0 <= 3.2 + HOLD_S + 0.6
    assert trace[-1][2] == pytest.approx(1.0, rel=0.1)
    assert trace[-1][2] < EXIT_RATIO


def test_verdict_kept_without_samples_and_evaluated_on_read() -> None:
    det = DriftDetector()
    for k in range(40):
        det.add(3 * P50, P50, k * 0.05)  # 2 s of 3x: crossing seen, hold not over
    assert not det.drifting
    row = det.as_json(10.0)  # no new sample: the read evaluates, hold is over
    assert row == {"ratio": 3.0, "samples": 40, "drifting": True}
    assert det.as_json(100.0)["drifting"]  # old samples still count: no news is not good news


def test_window_prefers_recent_samples_but_keeps_min_samples() -> None:
    det = DriftDetector(DriftConfig(window_s=1.0, min_samples=5))
    for k in range(20):
        det.add(P50, P50, k * 0.01)
    for k in range(10):
        det.add(2 * P50, P50, 5.0 + k * 0.01)
    det.evaluate(5.5)
    assert det.ratio == pytest.approx(2.0) and det.used == 10
    det.evaluate(50.0)  # window empty: the latest min_samples
    assert det.ratio == pytest.approx(2.0) and det.used == 5


def test_samples_are_clipped() -> None:
    det = DriftDetector()
    det.add(0.0, P50, 0.0)
    assert det.ratio == pytest.approx(1 / 16)
    det = DriftDetector()
    det.add(1e9, P50, 0.0)
    assert det.ratio == pytest.approx(16.0)


def test_service_ring_is_bounded_and_keeps_the_latest() -> None:
    ring = ServiceRing(8)
    for v in range(20):
        ring.add(float(v))
    assert ring.total == 20
    assert ring.values() == [float(v) for v in range(12, 20)]


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1024])
def test_quantile_matches_numpy(n: int) -> None:
    vals = sorted(random.Random(n).lognormvariate(0, 1) for _ in range(n))
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert quantile(vals, q) == pytest.approx(float(np.percentile(vals, 100 * q)))
    assert math.isnan(quantile([], 0.5))


# -- the monitor --------------------------------------------------------------------------------

ARCH = "toy"


def book() -> ProfileBook:
    pts = (LatencyPoint(1, 10.0, 12.0), LatencyPoint(4, 20.0, 24.0), LatencyPoint(8, 40.0, 48.0))
    return ProfileBook({(ARCH, "m"): Profile(ARCH, "m", 8, pts, engine="emulated")}, {})


def worker(wid: str, rtt_ms: float = 2.0) -> WorkerInfo:
    return WorkerInfo(wid, "pool", ARCH, ("m", "other"), 1, rtt_ms)


class FakeState:
    def __init__(self, wait: float, rtt_ms: float = 2.0) -> None:
        self.wait = wait
        self.rtt_ms = rtt_ms  # the view's: the worker's rtt + the predictor's overhead_ms

    def wait_at(self, now: float) -> float:
        return self.wait + now


class FakeView:
    def __init__(self, rtt_ms: float = 2.0) -> None:
        self.rtt_ms = rtt_ms

    def state(self, worker_id: str) -> FakeState:
        if worker_id != "w0":
            raise KeyError(worker_id)
        return FakeState(5.0, self.rtt_ms)


def test_monitor_feeds_detector_rings_and_gauges() -> None:
    clock = ManualClock()
    metrics = GatewayMetrics()
    mon = DriftMonitor(book(), clock, metrics, FakeView())
    assert mon.wait_ms("w0", 1.0) == 6.0 and mon.wait_ms("nope", 1.0) == 0.0
    w0, w1 = worker("w0"), worker("w1")
    for k in range(200):
        clock.t = k * 0.05
        # latency = rtt 2 + wait 3 + service; w0 as profiled, w1 3x slower
        mon.observe(w0, "m", 1, 2.0 + 3.0 + 10.0, 3.0, clock.t)
        mon.observe(w1, "m", 4, 2.0 + 3.0 + 60.0, 3.0, clock.t)
        mon.observe(w1, "other", 1, 50.0, 0.0, clock.t)  # no profile: ignored
    now = clock.t
    assert mon.worker_drift("w0", now) == {"m": {"ratio": 1.0, "samples": 128, "drifting": False}}
    assert mon.worker_drift("w1", now)["m"]["drifting"]
    assert mon.worker_drift("w1", now)["m"]["ratio"] == pytest.approx(3.0)
    assert mon.worker_drift("unknown", now) == {}
    assert mon.drifting(now) == [("w1", "m")]
    get = metrics.registry.get_sample_value
    assert get("synergai_profile_drift", {"worker": "w1", "model": "m"}) == 1.0
    assert get("synergai_profile_drift", {"worker": "w0", "model": "m"}) == 0.0
    assert get("synergai_profile_drift_ratio", {"worker": "w1", "model": "m"}) == pytest.approx(3.0)
    assert get("synergai_profile_drift_ratio", {"worker": "w1", "model": "other"}) is None
    assert b'synergai_profile_drift{model="m",worker="w1"} 1.0' in metrics.render()

    doc = mon.observed()
    assert doc["reservoir"] == 1024
    rows = {(r["arch"], r["model"], r["batch"]): r for r in doc["observed"]}
    assert set(rows) == {(ARCH, "m", 1), (ARCH, "m", 4)}
    r4 = rows[(ARCH, "m", 4)]
    assert r4["samples"] == r4["total"] == 200
    assert r4["p50_ms"] == r4["p99_ms"] == 60.0
    assert r4["profile_p50_ms"] == 20.0 and r4["workers"] == ["w0", "w1"]
    assert doc["profiles"]["toy/m"]["max_batch"] == 8
    json.dumps(doc)  # JSON-ready


def test_monitor_takes_the_views_rtt_with_the_path_overhead() -> None:
    # overhead_ms 1.5: the view reads w0's rtt as 3.5 ms; the service sample excludes it
    mon = DriftMonitor(book(), ManualClock(), None, FakeView(rtt_ms=3.5))
    mon.observe(worker("w0"), "m", 1, 3.5 + 3.0 + 10.0, 3.0, 0.0)
    mon.observe(worker("w1"), "m", 1, 2.0 + 3.0 + 10.0, 3.0, 0.0)  # not in the view: its rtt
    assert [r["p50_ms"] for r in mon.observed()["observed"]] == [10.0]


def test_monitor_without_metrics_or_view() -> None:
    mon = DriftMonitor(book(), ManualClock())
    assert mon.wait_ms("w0", 0.0) == 0.0
    mon.observe(worker("w0", 0.0), "m", 1, -5.0, 0.0, 0.0)  # rtt misconfigured: clipped
    assert mon.observed()["observed"][0]["p50_ms"] == 0.0
    assert mon.detector("w0", "m") is not None and mon.detector("w0", "x") is None


# -- live profiles ------------------------------------------------------------------------------


def observed_doc(samples: int = 500) -> dict[str, Any]:
    mon = DriftMonitor(book(), ManualClock())
    rng = random.Random(3)
    for k in range(samples):
        mon.observe(worker("w0", 0.0), "m", 1, 30.0 * math.exp(rng.gauss(0, 0.05)), 0.0, k)
        mon.observe(worker("w0", 0.0), "m", 2, 40.0, 0.0, k)  # profile 13.33
    return mon.observed()


def test_render_live_profiles_loads_as_a_profiles_dir(tmp_path: Path) -> None:
    files = render_live_profiles(observed_doc(), "http://gw:8080", "2030-01-01T00:00:00Z")
    assert set(files) == {(ARCH, "m")}
    path = tmp_path / ARCH / "m.yaml"
    path.parent.mkdir()
    path.write_text(files[(ARCH, "m")])
    prof = load_profiles(tmp_path).get(ARCH, "m")
    assert prof is not None and prof.max_batch == 8 and prof.engine == "emulated"
    assert prof.p50(1) == pytest.approx(30.0, rel=0.02)
    assert prof.p50(2) == pytest.approx(40.0)
    # batch 4 and 8 not observed: the profile's points x median(30/10, 40/13.33) = x 3
    assert prof.p50(4) == pytest.approx(60.0, rel=0.01)
    assert prof.p99(8) == pytest.approx(144.0, rel=0.01)
    assert prof.p99(1) >= prof.p50(1)
    assert prof.source.startswith(
        "observed live through the gateway at http://gw:8080 on 2030-01-01T00:00:00Z, "
        "1000 samples (batch 1, 2; batch 4, 8: profile x 2.99"
    )


def test_render_live_profiles_skips_thin_keys() -> None:
    assert render_live_profiles(observed_doc(5), "u", "d") == {}
    doc = observed_doc(50)
    del doc["profiles"]["toy/m"]  # unknown to the gateway: observed points only
    text = render_live_profiles(doc, "u", "d")[(ARCH, "m")]
    assert "max_batch: 2\n" in text and "  1: {p50: " in text and "  4:" not in text


class _Handler(BaseHTTPRequestHandler):
    doc: dict[str, Any] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.doc).encode()
        self.send_response(200 if self.path == "/synergai/v1/observed" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_gateway() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"doc": {}})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not thread.is_alive()


def test_run_profile_from_live(
    fake_gateway: tuple[str, type[_Handler]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = fake_gateway
    assert run_profile_from_live(url, tmp_path / "a") == 3  # nothing observed yet
    handler.doc = observed_doc()
    assert run_profile_from_live(url, tmp_path / "a") == 0
    prof = load_profiles(tmp_path / "a").get(ARCH, "m")
    assert prof is not None and f"at http://{url} on " in prof.source
    monkeypatch.chdir(tmp_path)
    assert run_profile_from_live(f"http://{url}/", None) == 0
    assert (tmp_path / "profiles-live" / ARCH / "m.yaml").exists()


def test_run_profile_from_live_unreachable(tmp_path: Path) -> None:
    with HTTPServer(("127.0.0.1", 0), _Handler) as s:
        port = s.server_port  # closed on exit: nothing listens there
    assert run_profile_from_live(f"http://127.0.0.1:{port}", tmp_path) == 2
    assert not any(tmp_path.iterdir())


def test_for_view_reads_the_views_profiles() -> None:
    from gateway.routing.view import FleetView

    view = FleetView([worker("w0")], book())
    mon = DriftMonitor.for_view(view, ManualClock())
    assert mon.book is view.book
    assert mon.wait_ms("w0", 0.0) == 0.0 and mon.wait_ms("gone", 0.0) == 0.0


def test_cli_profile_from_live(fake_gateway: tuple[str, type[_Handler]], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    url, handler = fake_gateway
    handler.doc = observed_doc()
    res = CliRunner().invoke(app, ["profile", "--from-live", url, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert load_profiles(tmp_path).get(ARCH, "m") is not None
