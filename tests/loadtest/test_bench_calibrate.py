"""``bench --overhead-ms``: what the simulator and the live gateways are given (no stack here)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from gateway.scenario import LogNormalMs, Overhead, load_scenario
from loadtest.bench import overhead_mode, resolve_overhead
from loadtest.bench_calibrate import (
    CALIBRATION,
    RTT_MS,
    SERVICE_MS,
    Calibration,
    duration_seconds,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "loadtest" / "scenarios" / "demo.yaml"


def _console() -> Console:
    return Console(file=io.StringIO())


def test_mode_defaults() -> None:
    sc = load_scenario(DEMO)
    assert overhead_mode(None, sc, compare_sim=True) == "auto"
    assert overhead_mode(None, sc, compare_sim=False) is None
    assert overhead_mode("0", sc, compare_sim=True) is None
    assert overhead_mode("2.5", sc, compare_sim=True) == 2.5
    assert overhead_mode("AUTO", sc, compare_sim=False) == "auto"
    own = sc.model_copy(update={"overhead_ms": 1.0})
    assert overhead_mode(None, own, compare_sim=True) == "scenario"
    for bad in ("-1", "fast", "nan"):
        with pytest.raises(ValueError, match="--overhead-ms"):
            overhead_mode(bad, sc, compare_sim=True)


def test_resolve_constant_and_off() -> None:
    sc = load_scenario(DEMO)
    out, gw, meta = resolve_overhead(2.5, sc, "http", _console())
    assert out.overhead == Overhead(p50=2.5) and gw == {}
    assert meta == {
        "source": "flag",
        "sim": {"p50": 2.5, "p99": 2.5, "mean": 2.5},
        "gateway_ms": 0.0,
    }
    assert out.profile_book is sc.profile_book and out.path == sc.path
    own = sc.model_copy(update={"overhead_ms": 3.0})
    own._book, own._path = sc._book, sc._path
    off, gw, meta = resolve_overhead(None, own, "http", _console())
    assert off.overhead.p50 == 0.0 and meta["source"] == "off" and gw == {}
    kept, gw, meta = resolve_overhead("scenario", own, "http", _console())
    assert kept.overhead.p50 == 3.0 and meta["source"] == "scenario" and gw == {}


def test_calibration_overhead_and_gateway_figures() -> None:
    cal = Calibration(3.2, 9.5, 4.0, 2.1, 200, (1.0, 1.2))
    assert cal.overhead() == Overhead(p50=3.2, p99=9.5) and not cal.saturated
    assert Calibration(5800.0, 7800.0, 5900.0, 248.0, 1800, (14.0, 13.0)).saturated
    # 1 ms of it on the slot (p50; mean 1.5, p99 6): the rest is outside
    on = Calibration(3.2, 9.5, 4.0, 2.1, 200, (1.0, 1.2), 20.0, 1.0, 6.0, 1.5)
    assert on.overhead() == Overhead(p50=2.2, p99=8.0, device=LogNormalMs(p50=1.0, p99=6.0))
    assert Calibration(-0.1, -0.2, 0.0, 0.0, 20, (0, 0)).overhead() == Overhead(p50=0.0, p99=0.0)
    text = (
        "# HELP synergai_request_duration_seconds x\n"
        'synergai_request_duration_seconds_bucket{model="a",pool="p",le="0.005"} 1.0\n'
        'synergai_request_duration_seconds_sum{model="a",pool="p"} 0.5\n'
        'synergai_request_duration_seconds_count{model="a",pool="p"} 50.0\n'
        'synergai_request_duration_seconds_sum{model="b",pool="p"} 0.25\n'
        'synergai_request_duration_seconds_count{model="b",pool="p"} 25.0\n'
    )
    assert duration_seconds(text) == (0.75, 75.0)


def test_calibration_scenario_is_what_the_docstring_says() -> None:
    sc = load_scenario(CALIBRATION)
    p = sc.profile_book.get("calib", "fixed5")
    assert p is not None and p.p50(1) == SERVICE_MS and p.p99(1) == SERVICE_MS
    assert sc.pools[0].rtt_ms == RTT_MS and sc.pools[0].instances == 1
    w = sc.workload[0]
    assert w.arrival == "constant" and 1000.0 / w.rate_rps > 5 * SERVICE_MS  # none waits


def test_device_ms_reads_the_execution_log(tmp_path: Path) -> None:
    import json

    from loadtest.bench_calibrate import device_ms

    rows = [
        {"t0": 9.0, "deadline": 9.005, "end": 9.007},  # before the replay: warm-up
        {"t0": 10.0, "deadline": 10.005, "end": 10.0065},
        {"t0": 11.0, "deadline": 11.0, "end": 10.9},  # anchored back: never negative
    ]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{bad\n")
    got = device_ms(tmp_path, since=10.0)
    assert len(got) == 2 and got[0] == pytest.approx(1.5) and got[1] == 0.0


def test_at_rate_keeps_requests_from_waiting_for_a_slot() -> None:
    from loadtest.bench_calibrate import at_rate

    assert at_rate(0).workload[0].rate_rps == 20.0  # the file as it is
    for rate, slots in ((45.0, 3), (180.0, 4), (500.0, 7), (5000.0, 8)):
        sc = at_rate(rate)
        assert sc.workload[0].rate_rps == rate and sc.workload[0].arrival == "poisson"
        assert sc.pools[0].instances == slots
        assert sc.profile_book.get("calib", "fixed5") is not None
