"""``synergai demo --exit-after-load`` end to end on a two-pool scenario: 0 errors, tables
for every demo policy, and every child (Valkey, Triton servers, stubs) gone afterwards."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from gateway.core.net import free_port
from workers.testing import FleetFactory, write_scenario

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


async def test_each_demo_policy_starts_on_an_idle_fleet(
    triton_fleet: FleetFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """round_robin leaves a slow one-slot pool seconds behind (its client gives up after 0.5 s;
    Triton keeps the work); least_outstanding must start only once that backlog is gone."""
    import loadtest.loops as loops
    from gateway import demo
    from gateway.app import AppDeps, create_app
    from gateway.embedded import EmbeddedValkey
    from gateway.scenario import load_scenario
    from gateway.server import InProcessServer, inprocess_config

    scenario = write_scenario(
        tmp_path,
        pools=[
            {"name": "pi", "arch": "toy-pi", "workers": 1, "instances": 1, "rtt_ms": 0,
             "models": ["m"]},
            {"name": "orin", "arch": "toy-orin", "workers": 1, "instances": 2, "rtt_ms": 0,
             "models": ["m"]},
        ],
        profiles={("toy-pi", "m"): {1: (150.0, 150.0)}, ("toy-orin", "m"): {1: (4.0, 4.0)}},
        workload=[{"model": "m", "rate_rps": 24, "slo_ms": 100}],
        extra={"duration_s": 2, "seed": 1},
    )  # fmt: skip
    sc = load_scenario(scenario)
    workers = triton_fleet(scenario)
    fleet = triton_fleet.last
    monkeypatch.setattr(demo, "DEMO_POLICIES", ("round_robin", "least_outstanding"))
    monkeypatch.setattr(demo, "CLIENT_TIMEOUT_S", 0.5)
    valkey = EmbeddedValkey()
    port = free_port()
    settings = demo._settings(sc, workers, port, free_port(), valkey.start())
    app = create_app(settings, AppDeps(profiles=sc.scaled().profile_book))
    server = InProcessServer(inprocess_config(app, "127.0.0.1", port))
    serving = asyncio.ensure_future(server.serve())
    service = app.state.service
    real_replay = loops.replay
    at_start: list[tuple[dict[str, int], int]] = []
    at_end: list[tuple[dict[str, int], int]] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        at_start.append((await asyncio.to_thread(fleet.backlog), service.inflight))
        out = await real_replay(*args, **kwargs)
        at_end.append((await asyncio.to_thread(fleet.backlog), service.inflight))
        return out

    monkeypatch.setattr(loops, "replay", spy)
    try:
        for _ in range(300):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started
        await demo._load(service, fleet, sc, f"http://127.0.0.1:{port}", 2.0, asyncio.Event())
    finally:
        server.should_exit = True
        await asyncio.wait({serving}, timeout=15)
        valkey.stop()
    err = capsys.readouterr().err
    assert len(at_start) == 2
    backlog, inflight = at_end[0]
    assert sum(backlog.values()) > 0 or inflight > 0, "round_robin left no backlog to wait for"
    for backlog, inflight in at_start:  # every policy started on an idle fleet
        assert set(backlog.values()) == {0} and inflight == 0, (backlog, inflight)
    lines = err.splitlines()
    waiting = lines.index("waiting for an idle fleet before least_outstanding ...")
    assert lines[waiting + 1].startswith("fleet idle after"), lines[waiting:]
    assert any(line.startswith("load: least_outstanding") for line in lines[waiting + 1 :])
