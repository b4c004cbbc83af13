"""``synergai demo --exit-after-load`` end to end on a two-pool scenario: 0 errors, tables
for every demo policy, and every child (Valkey, Triton servers, stubs) gone afterwards."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gateway.core.net import free_port
from workers.testing import write_scenario

pytestmark = pytest.mark.integration


def test_demo_runs_the_load_and_stops_every_child(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path,
        pools=[
            {"name": "edge", "arch": "toy-edge", "workers": 1, "instances": 1, "rtt_ms": 2,
             "models": ["m1"]},
            {"name": "cloud", "arch": "toy-cloud", "workers": 1, "instances": 2, "rtt_ms": 10,
             "models": ["m1"]},
        ],
        profiles={("toy-edge", "m1"): {1: (3.0, 4.0)}, ("toy-cloud", "m1"): {1: (2.0, 3.0)}},
        workload=[{"model": "m1", "rate_rps": 40, "slo_ms": 100, "priority": 1}],
    )  # fmt: skip
    port = free_port()
    cmd = [sys.executable, "-m", "gateway.cli", "demo", "--scenario", str(scenario),
           "--duration", "1.5", "--exit-after-load", "--port", str(port),
           "--grpc-port", str(free_port())]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, tuple[psutil.Process, str]] = {}
    while proc.poll() is None and time.monotonic() - t0 < 120:
        try:
            for c in psutil.Process(proc.pid).children(recursive=True):
                if c.pid not in seen:
                    seen[c.pid] = (c, _name(c))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    names = [n for _, n in seen.values()]
    assert any("valkey" in n for n in names) and any("tritonserver" in n for n in names), names
    left = [pid for pid, (p, _) in seen.items() if _alive(p)]
    assert not left, f"children left running: {left}"
    assert "serving in" in out and f"http://127.0.0.1:{port}/v2" in out
    assert "curl -s -i" in out and "tritonclient" in out
    for policy in ("round_robin", "least_outstanding", "synergai"):
        assert f"{policy}: per worker" in out
        assert f"{policy}: " in out
    assert " 0 errors" in out
    assert "stopped: gateway, Triton fleet, Valkey" in err


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
