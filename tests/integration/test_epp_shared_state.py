"""Pickers and gateways share one view: what the EPP books in Redis, a gateway replica sees.

Real Valkey, one real Triton worker (``slow``: 1 s), Envoy + ``synergai epp`` and an
in-process gateway (uvicorn) on the same Valkey and prefix. While a request routed by the
picker is in flight, the gateway's view shows that worker's fleet-wide outstanding work
(``outstanding`` 1 with ``local_outstanding`` 0: it came through Redis); afterwards, 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.embedded import EmbeddedValkey
from gateway.epp.stack import EnvoyStack
from gateway.server import ServerThread
from gateway.testing import fleet_settings
from workers.fleet import WorkerSpec
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

BODY = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[1]}]}'


@pytest.fixture(scope="module")
def valkey() -> Iterator[str]:
    server = EmbeddedValkey()
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fleet(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[WorkerSpec], Path]:
    directory = tmp_path_factory.mktemp("shared")
    path = write_scenario(
        directory,
        pools=[{"name": "p", "arch": "toy", "workers": 1, "instances": 2, "rtt_ms": 0,
                "models": ["slow"]}],
        profiles={("toy", "slow"): {1: (1000.0, 1000.0), 8: (1000.0, 1000.0)}},
    )  # fmt: skip
    return triton_fleet(path, inject_faults=False), directory / "profiles"


def _row(gateway_url: str, worker: str) -> dict[str, object]:
    rows = httpx.get(f"{gateway_url}/synergai/v1/workers", timeout=5).json()
    items = rows["workers"] if isinstance(rows, dict) else rows
    return next(r for r in items if r["id"] == worker)


def test_gateway_sees_what_the_picker_booked(
    fleet: tuple[list[WorkerSpec], Path], valkey: str, tmp_path: Path
) -> None:
    workers, profiles = fleet
    settings = {"models": {"slow": {"slo_ms": 5000}}, "refresh_interval_s": 0.05}
    app = create_app(fleet_settings(workers, profiles, redis_url=valkey, refresh_interval_s=0.05,
                                    health_interval_s=60))  # fmt: skip
    with (
        EnvoyStack([w.as_config() for w in workers], tmp_path, profiles, settings=settings,
                   redis_url=valkey) as stack,
        ServerThread(app) as gateway,
    ):  # fmt: skip
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{stack.url}/v2/models/slow/infer", content=BODY, timeout=10)
            )
        )
        sender.start()
        seen = None
        # the booking lasts while the 1 s request runs: look until its answer is back (a
        # loaded machine may take a while to send it through Envoy and the picker)
        give_up = time.monotonic() + 10
        while sender.is_alive() and time.monotonic() < give_up:
            row = _row(gateway.url, workers[0].id)
            if row["outstanding"] == 1:
                seen = row
                break
            time.sleep(0.02)
        sender.join(10)
        assert answers and answers[0].status_code == 200
        assert answers[0].headers["x-synergai-worker"] == workers[0].id
        assert seen is not None, "the gateway never saw the picker's booking"
        assert seen["local_outstanding"] == 0  # it came through Redis, not the gateway
        deadline = time.monotonic() + 5
        while _row(gateway.url, workers[0].id)["outstanding"] != 0:
            assert time.monotonic() < deadline, "the picker's release never reached the gateway"
            time.sleep(0.05)
