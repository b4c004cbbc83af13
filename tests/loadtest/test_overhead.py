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


def test_envoy_summary_and_large_tensor_rows() -> None:
    from loadtest.overhead_envoy import summary

    def row(target: str, proto: str, c: int, rps: float, p50: float, **kw: object) -> dict:
        return {"target": target, "protocol": proto, "concurrency": c, "rps": rps,
                "p50_ms": p50, **kw}  # fmt: skip

    rows = [
        row("direct", "http", 1, 1000, 1.0), row("envoy", "http", 1, 800, 1.2),
        row("envoy+epp", "http", 1, 500, 1.4), row("direct", "http", 32, 2000, 10.0),
        row("envoy+epp", "http", 32, 1800, 12.0), row("gateway", "http", 32, 1000, 20.0),
        row("envoy", "http", 8, 100, 80.0, tensor_bytes=1 << 20),
        row("envoy+epp", "http", 8, 95, 84.0, tensor_bytes=1 << 20),
        row("envoy+epp", "grpc", 32, 1.0, 1.0, variant="model-in-body"),
        row("envoy+epp", "http", 32, 1900, 11.0, variant="noop-picker"),
        row("envoy+epp", "http", 1, 700, 1.3, variant="noop-picker"),
        row("envoy", "grpc", 8, 200, 40.0, tensor_bytes=1 << 20),
        row("envoy+epp", "grpc", 8, 150, 50.0, tensor_bytes=1 << 20, variant="model-in-body"),
    ]  # fmt: skip
    s = summary(rows)["http"]
    assert s["noop_picker_rps_vs_direct_c32"] == 0.95
    assert s["noop_picker_added_p50_ms_c1_vs_envoy"] == 0.1
    assert s["envoy+epp_rps_vs_direct_c32"] == 0.9
    assert s["gateway_rps_vs_direct_c32"] == 0.5
    assert s["envoy+epp_added_p50_ms_c1_vs_direct"] == 0.4
    assert s["envoy+epp_added_p50_ms_c1_vs_envoy"] == 0.2
    assert s["mib_envoy+epp_rps_vs_envoy_c8"] == 0.95
    grpc = summary(rows)["grpc"]
    assert grpc["envoy+epp_rps_vs_direct_c32"] is None  # variants left out
    assert grpc["mib_model_in_body_rps_vs_envoy_c8"] == 0.75


def test_binary_payload_for_large_tensors() -> None:
    from loadtest.client import Payloads

    body, headers = Payloads(width=262_144).http_request("echo", 1)
    n = int(headers["inference-header-content-length"])
    assert len(body) - n == 1 << 20 and headers["content-type"] == "application/octet-stream"
    small, small_headers = Payloads().http_request("echo", 2)
    assert small_headers == {"content-type": "application/json"} and b'"shape":[2,4]' in small
    req = Payloads(width=262_144).grpc_request("echo", 1)
    assert len(req.raw_input_contents[0]) == 1 << 20


def test_picker_cpu_leaves_variants_out() -> None:
    from loadtest.overhead import _mean_cpu

    rows = [
        {"target": "envoy+epp", "protocol": "http", "rps": 100.0, "epp_cpu_ms_per_request": 2.0},
        {"target": "envoy+epp", "protocol": "http", "rps": 300.0, "epp_cpu_ms_per_request": 1.0},
        {"target": "envoy+epp", "protocol": "http", "rps": 900.0, "epp_cpu_ms_per_request": 0.1,
         "variant": "noop-picker"},
    ]  # fmt: skip
    assert _mean_cpu(rows, "envoy+epp", "epp_cpu_ms_per_request") == 1.25
