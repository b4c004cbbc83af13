"""``Fleet.backlog`` and ``wait_idle`` on a real Triton server with work a client abandoned.

Six 150 ms requests on a one-slot server, each given up by the client after 50 ms: Triton keeps
all six (0.9 s of work). The backlog must count them while queued (Triton's pending count) *and*
while executing (the slot file: Triton's pending count is 0 for the last one), and ``wait_idle``
must return only when the server has finished every one of them.
"""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from gateway.state.triton_metrics import parse_metrics
from loadtest.client import Arrival
from loadtest.loops import replay
from workers.idle import wait_idle
from workers.repository import busy_slots, slots_file
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MS = 150.0
N = 6


def _done(metrics_url: str) -> int:
    """Requests the device model has finished (success + failure counters)."""
    with urllib.request.urlopen(metrics_url, timeout=2) as r:
        text = r.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(("nv_inference_request_success", "nv_inference_request_failure"))
            and 'model="_emulated_device"' in line
        )
    )


def test_wait_idle_waits_for_abandoned_queued_and_executing_work(
    triton_fleet: FleetFactory, tmp_path: Path
) -> None:
    scenario = write_scenario(
        tmp_path,
        pools=[{"name": "p", "arch": "toy", "workers": 1, "instances": 1, "rtt_ms": 0,
                "models": ["m"]}],
        profiles={("toy", "m"): {1: (MS, MS)}},
    )  # fmt: skip
    (worker,) = triton_fleet(scenario)
    fleet = triton_fleet.last
    server = fleet.server(worker.id)
    assert fleet.backlog() == {worker.id: 0}
    before = _done(worker.metrics_url)
    trace = [Arrival(t_s=0.0, model="m", slo_ms=MS) for _ in range(N)]
    out = asyncio.run(replay(trace, [worker.http_url], "http", timeout_s=0.05))
    assert [o.status for o in out] == ["lost"] * N  # the client gave up on all of them

    seen: list[tuple[int, int, int]] = []  # (backlog, Triton pending, busy slots)

    def backlog() -> dict[str, int]:
        held = fleet.backlog()
        with urllib.request.urlopen(worker.metrics_url, timeout=2) as r:
            pending = int(parse_metrics(r.read().decode(), 0.0).pending)
        seen.append((held[worker.id], pending, busy_slots(slots_file(server.control_file))))
        return held

    idle = wait_idle(backlog, 30.0, poll_s=0.02)
    assert idle.idle, idle.describe()
    assert _done(worker.metrics_url) - before == N  # every abandoned request was served first
    assert max(b for b, _, _ in seen) >= 2  # it saw the queue the client left behind
    # the last request was still executing when Triton's pending count was already 0
    assert any(b == 1 and p == 0 and busy == 1 for b, p, busy in seen), seen
    assert fleet.backlog() == {worker.id: 0}
