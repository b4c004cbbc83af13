"""Pieces of ``bench overhead`` that need no servers: rows, profile summary, plot."""

from __future__ import annotations

from pathlib import Path

from loadtest.client import Outcome
from loadtest.loops import ClosedLoopResult
from loadtest.overhead import _row, summarize_collapsed


def test_row_contract() -> None:
    ok = [Outcome("ok", ms) for ms in (1.0, 2.0, 3.0, 4.0)]
    r = ClosedLoopResult(concurrency=8, seconds=2.0, outcomes=[*ok, Outcome("error", 9.0)])
    row = _row("gateway", "http", r)
    assert row == {
        "target": "gateway",
        "protocol": "http",
        "concurrency": 8,
        "rps": 2.0,
        "p50_ms": 2.5,
        "p99_ms": 3.97,
        "errors": 1,
    }


def test_summarize_collapsed() -> None:
    text = "main;serve;infer;redis 6\nmain;serve;infer;write 3\nmain;serve;idle 1\nbad line\n"
    out = summarize_collapsed(text)
    assert out.startswith("10 samples")
    assert " 60.0  redis" in out
    totals = out.split("total%")[1]
    assert "60.0  redis" in totals
    assert "serve" not in totals  # on every stack: left out
    assert "infer" not in totals  # on 90 % of them: left out too
    assert summarize_collapsed("") == "(no samples)\n"


def test_plot_overhead(tmp_path: Path) -> None:
    from loadtest.overhead import plot_overhead

    rows = [
        {"target": t, "protocol": "http", "concurrency": c, "rps": 100.0 * c, "p50_ms": 1.0 * c}
        for t in ("direct", "gateway", "nginx")
        for c in (1, 8, 32, 128)
    ]
    doc = {"mode": "overhead", "rows": rows, "gateway_cpu_ms_per_request": 0.8}
    assert plot_overhead(doc, tmp_path / "o.png").stat().st_size > 10_000
