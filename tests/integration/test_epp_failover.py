"""GIE ``failureMode``: kill -9 the endpoint picker mid-load, behind a real Envoy.

FailOpen (``failure_mode_allow``): Envoy keeps serving through its own least-request balancing
(no failed request beyond the ones in flight at the kill); FailClose: it answers 503 cleanly.
In both, a restarted picker takes over again (answers carry ``x-synergai-worker`` again).
The sequence and its figures are :mod:`loadtest.epp_failover` (``python -m
loadtest.epp_failover`` prints them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.epp.stack import EnvoyStack
from loadtest.epp_failover import Load, failover_figures, kill_and_restart
from workers.fleet import WorkerSpec
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

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


@pytest.fixture
def run_load() -> Iterator[list[Load]]:
    loads: list[Load] = []
    yield loads
    for load in loads:
        load.stop.set()


def _kill_and_restart(stack: EnvoyStack, load: Load) -> tuple[float, float, float]:
    return kill_and_restart(stack, load, CLIENTS)


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
    figures = failover_figures(load, killed, restarted, back, CLIENTS)
    assert figures["outage"]["failed"] == 0 and figures["outage"]["picked_by_epp"] == 0
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
