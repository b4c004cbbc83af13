"""GIE ``failureMode``: kill -9 the endpoint picker mid-load, behind a real Envoy.

FailOpen (``failure_mode_allow``): Envoy keeps serving through its own least-request balancing
(no failed request beyond the ones in flight at the kill); FailClose: it answers 503 cleanly.
In both, a restarted picker takes over again (answers carry ``x-synergai-worker`` again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.epp.stack import EnvoyStack
from workers.fleet import WorkerSpec
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

BODY = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[1]}]}'
CLIENTS = 4


@pytest.fixture(scope="module")
def fleet(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[WorkerSpec], Path]:
    directory = tmp_path_factory.mktemp("failover")
    path = write_scenario(
        directory,
        pools=[{"name": "p", "arch": "toy", "workers": 2, "instances": 2, "rtt_ms": 0,
                "models": ["m"]}],
        profiles={("toy", "m"): {1: (5.0, 5.0), 8: (8.0, 8.0)}},
    )  # fmt: skip
    return triton_fleet(path, inject_faults=False), directory / "profiles"


@dataclass
class Load:
    """Closed-loop clients recording (time, status, picked-by-our-EPP) per answer."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, int, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, deadline: float) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    resp = http.post(f"{self.url}/v2/models/m/infer", content=BODY)
                    row = (time.monotonic(), resp.status_code, "x-synergai-worker" in resp.headers)
                except httpx.HTTPError:
                    row = (time.monotonic(), 0, False)
                with self.lock:
                    self.results.append(row)
                time.sleep(0.002)

    def between(self, t0: float, t1: float) -> list[tuple[float, int, bool]]:
        with self.lock:
            return [r for r in self.results if t0 <= r[0] < t1]


@pytest.fixture
def run_load() -> Iterator[list[Load]]:
    loads: list[Load] = []
    yield loads
    for load in loads:
        load.stop.set()


def _kill_and_restart(stack: EnvoyStack, load: Load) -> tuple[float, float, float]:
    """Load for 1 s, kill -9 the picker, load 1.5 s, restart it, load until it picks again.

    Returns:
        When it was killed, when it was restarted, and when it picked again (0 if never);
        the load goes on for 1 s after that.
    """
    assert stack.epp is not None
    deadline = time.monotonic() + 60
    threads = [threading.Thread(target=load.client, args=(deadline,)) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        killed = time.monotonic()
        stack.epp.kill()  # SIGKILL
        time.sleep(1.5)
        restarted = time.monotonic()
        stack.epp.start()
        stack.epp.wait_ready(30)
        back = time.monotonic()
        limit = back + 15
        took_over = 0.0
        while time.monotonic() < limit and not took_over:
            ours = [r[0] for r in load.between(back, 1e18) if r[2]]
            took_over = min(ours) if ours else 0.0
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        load.stop.set()
        for t in threads:
            t.join(15)
    return killed, restarted, took_over


def test_fail_open_keeps_serving_through_envoy(
    fleet: tuple[list[WorkerSpec], Path], tmp_path: Path, run_load: list[Load]
) -> None:
    workers, profiles = fleet
    with EnvoyStack([w.as_config() for w in workers], tmp_path, profiles, fail_open=True) as s:
        load = Load(s.url)
        run_load.append(load)
        killed, restarted, back = _kill_and_restart(s, load)
    before = load.between(0, killed)
    down = load.between(killed + 0.2, restarted)
    assert back, "the restarted picker takes over"
    after = load.between(back, 1e18)
    assert before and all(code == 200 and ours for _, code, ours in before)
    assert down and all(code == 200 for _, code, _ in down), "fail-open must keep serving"
    assert not any(ours for _, _, ours in down)  # Envoy's own balancing meanwhile
    failed = [r for r in load.results if r[1] != 200]
    assert len(failed) <= CLIENTS, f"failures beyond the in-flight ones: {failed}"
    assert after and all(code == 200 for _, code, _ in after)


def test_fail_closed_answers_503_then_recovers(
    fleet: tuple[list[WorkerSpec], Path], tmp_path: Path, run_load: list[Load]
) -> None:
    workers, profiles = fleet
    with EnvoyStack([w.as_config() for w in workers], tmp_path, profiles, fail_open=False) as s:
        load = Load(s.url)
        run_load.append(load)
        killed, restarted, back = _kill_and_restart(s, load)
    down = load.between(killed + 0.2, restarted)
    assert down and all(code == 503 for _, code, _ in down), {c for _, c, _ in down}
    assert back, "the restarted picker takes over"
    after = load.between(back, 1e18)
    assert after and all(code == 200 and ours for _, code, ours in after)
