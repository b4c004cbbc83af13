"""``synergai bench`` end to end on a tiny scenario: real Valkey, Triton, gateways, CLI JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from workers.testing import write_scenario

pytestmark = pytest.mark.integration

POLICY_KEYS = {
    "requests",
    "ok",
    "slo_violations",
    "violation_rate",
    "shed",
    "errors",
    "goodput_rps",
    "p50_ms",
    "p99_ms",
    "per_priority",
    "decision_us_p50",
}


def _scenario(tmp_path: Path) -> Path:
    """Two one-worker pools: a fast one and one four times slower, 30 rps with a 25 ms SLO."""
    return write_scenario(
        tmp_path,
        pools=[
            {
                "name": "fast",
                "arch": "fastbox",
                "workers": 1,
                "instances": 1,
                "models": ["m"],
                "rtt_ms": 0.0,
            },
            {
                "name": "slow",
                "arch": "slowbox",
                "workers": 1,
                "instances": 1,
                "models": ["m"],
                "rtt_ms": 0.0,
            },
        ],
        profiles={("fastbox", "m"): {1: (4.0, 5.0)}, ("slowbox", "m"): {1: (16.0, 20.0)}},
        workload=[
            {"model": "m", "rate_rps": 20, "slo_ms": 25, "priority": 1},
            {"model": "m", "rate_rps": 10, "slo_ms": 60, "priority": 0, "category": "frequency"},
        ],
        name="tiny",
        extra={"duration_s": 4},
    )


def _ours(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in (p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            continue
    return out


def _bench(args: list[str], timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bench_json_contract_and_every_child_reaped(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    proc = _bench(
        [
            "--scenario",
            str(scenario),
            "--policy",
            "round_robin",
            "--policy",
            "least_outstanding",
            "--duration",
            "3",
            "--json",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert doc["scenario"] == "tiny"
    assert doc["mode"] == "live"
    assert doc["seed"] == 1
    assert doc["duration_s"] == 3.0
    assert list(doc["policies"]) == ["round_robin", "least_outstanding"]
    for row in doc["policies"].values():
        assert set(row) >= POLICY_KEYS
        assert 40 <= row["requests"] <= 140  # ~90 expected from 30 rps x 3 s
        assert row["ok"] + row["shed"] + row["errors"] == row["requests"]
        assert 0.0 <= row["violation_rate"] <= 1.0
        assert set(row["per_priority"]) == {"0", "1"}
        assert set(row["workers"]) <= {"fast-0", "slow-0"}
        assert row["errors"] == 0
    # round robin splits evenly; the slow pool (16 ms + queueing) misses some 25 ms SLOs
    rr = doc["policies"]["round_robin"]["workers"]
    assert abs(rr.get("fast-0", 0) - rr.get("slow-0", 0)) <= 4
    # same trace for every policy
    assert len({r["requests"] for r in doc["policies"].values()}) == 1
    assert "progress" not in proc.stdout
    # after each policy the bench waited for an idle fleet and said so
    assert proc.stderr.count("fleet idle after") + proc.stderr.count("fleet not idle") == 2
    assert _ours(str(tmp_path)) == []  # no Triton server, stub or relay left behind


@pytest.mark.slow
def test_bench_compare_sim_plot_html(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    png, html = tmp_path / "bench.png", tmp_path / "bench.html"
    proc = _bench(
        [
            "--scenario",
            str(scenario),
            "--policy",
            "round_robin",
            "--policy",
            "least_outstanding",
            "--duration",
            "3",
            "--compare-sim",
            "--json",
            "--plot",
            str(png),
            "--html",
            str(html),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["scenario"] == "tiny"
    assert set(doc["sim"]) == set(doc["live"]) == {"round_robin", "least_outstanding"}
    for side in ("sim", "live"):
        for row in doc[side].values():
            assert set(row) >= POLICY_KEYS
    assert doc["sim"]["round_robin"]["requests"] == doc["live"]["round_robin"]["requests"]
    assert set(doc["fidelity"]["policies"]) == {"round_robin", "least_outstanding"}
    assert png.stat().st_size > 10_000
    assert (tmp_path / "bench-live.png").exists()
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    assert _ours(str(tmp_path)) == []
