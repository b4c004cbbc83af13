"""Tables and plots of ``synergai bench`` from a document alone (no servers)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from loadtest.bench_fidelity import fidelity
from loadtest.bench_report import plot_compare, plot_live, print_tables, timeline
from loadtest.client import Arrival, Outcome


def _row(v: float) -> dict[str, object]:
    return {
        "requests": 10,
        "ok": 9,
        "slo_violations": int(v * 10),
        "violation_rate": v,
        "shed": 1,
        "errors": 0,
        "goodput_rps": 3.0,
        "p50_ms": 12.0,
        "p99_ms": 40.0,
        "decision_us_p50": 20.0,
    }


def _doc() -> dict[str, object]:
    return {
        "scenario": "x",
        "mode": "live",
        "duration_s": 3.0,
        "policies": {"round_robin": _row(0.5), "synergai": _row(0.1)},
        "meta": {"protocol": "http", "gateways": 2},
    }


def test_timeline_bins_and_pools() -> None:
    trace = [Arrival(t_s=t, model="m", slo_ms=10.0) for t in (0.1, 0.5, 1.2, 2.9)]
    outs = [
        Outcome("ok", 5.0, worker="a-0"),
        Outcome("ok", 50.0, worker="b-0"),
        Outcome("shed", 1.0),
        Outcome("ok", 2.0, worker="a-0"),
    ]
    tl = timeline(trace, outs, {"a-0": "a", "b-0": "b"}, duration_s=3.0)
    assert tl["requests"] == [2, 1, 1]
    assert tl["violations"] == [1, 1, 0]
    assert tl["pool_load"] == {"a": [1, 0, 1], "b": [1, 0, 0]}
    assert sorted(tl["latencies_ms"]) == [2.0, 5.0, 50.0]


def test_plots_and_tables(tmp_path: Path) -> None:
    doc = _doc()
    tl = {
        "bin_s": 1.0,
        "policies": {
            n: {"violations": [1, 2, 0], "latencies_ms": [1.0, 5.0], "pool_load": {"a": [1, 2, 3]}}
            for n in ("round_robin", "synergai")
        },
    }
    assert plot_live(doc, tmp_path / "live.png", tl).stat().st_size > 10_000
    assert plot_live(doc, tmp_path / "bars.png").stat().st_size > 5_000
    cmp = {
        "scenario": "x",
        "sim": {"round_robin": _row(0.45), "synergai": _row(0.02)},
        "live": doc["policies"],
    }
    cmp["fidelity"] = fidelity(cmp["sim"], cmp["live"])  # type: ignore[arg-type]
    assert plot_compare(cmp, tmp_path / "cmp.png").stat().st_size > 5_000
    buf = io.StringIO()
    print_tables(cmp, Console(file=buf, width=140))
    text = buf.getvalue()
    assert "simulator vs live" in text and "synergai" in text and "same ranking: True" in text
    buf = io.StringIO()
    print_tables(doc, Console(file=buf, width=140))
    assert "round_robin" in buf.getvalue()
