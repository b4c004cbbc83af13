"""Online correction end to end: a real Triton worker made 3x slower loses its traffic.

Two real Triton servers of two emulated architectures (one worker each, 2 instances, on
loopback): ``toy-b`` is profiled at 10 ms and ``toy-a`` at 20 ms, so ``synergai`` (the real
gateway app on uvicorn, embedded Valkey) sends nearly all of a light closed-loop load to
``b-0``, the earlier predicted completion. Then ``b-0`` is slowed 3x through the fleet's control
channel (30 ms, slower than ``a-0``'s 20 ms), which the gateway only learns from what ``b-0``
delivers: within seconds its correction must move the traffic to ``a-0``. The share of each
worker is counted from the ``x-synergai-worker`` response headers before and after.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.server import ServerThread
from gateway.testing import fleet_settings
from workers.testing import FleetFactory, write_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FAST, SLOW_PROFILE, FACTOR = 10.0, 20.0, 3.0
BODY = orjson.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)
HEADERS = {"x-slo-ms": "500", "x-priority": "1"}


@pytest.fixture(scope="module")
def stack(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("correction")
    pool = {"workers": 1, "instances": 2, "rtt_ms": 0, "models": ["m1"]}
    scenario = write_scenario(
        directory,
        pools=[{"name": "a", "arch": "toy-a", **pool}, {"name": "b", "arch": "toy-b", **pool}],
        profiles={
            ("toy-a", "m1"): {1: (SLOW_PROFILE, SLOW_PROFILE), 8: (SLOW_PROFILE, SLOW_PROFILE)},
            ("toy-b", "m1"): {1: (FAST, FAST), 8: (FAST, FAST)},
        },
    )
    workers = triton_fleet(scenario)
    settings = fleet_settings(
        workers, directory / "profiles", policy="synergai", redis_timeout_s=0.5
    )
    server = ServerThread(create_app(settings))
    server.start()
    try:
        yield {"url": server.url, "fleet": triton_fleet.last}
    finally:
        server.stop()
    assert not server._thread.is_alive()


class Load:
    """``n`` closed-loop clients posting ``m1``; records ``(time, x-synergai-worker)``."""

    def __init__(self, url: str, n: int = 2) -> None:
        self.url = url
        self.stop = threading.Event()
        self.errors = 0
        self.seen: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, headers=HEADERS) as c:
            while not self.stop.is_set():
                r = c.post("/v2/models/m1/infer", content=BODY)
                if r.status_code != 200:
                    self.errors += 1
                    continue
                with self.lock:
                    self.seen.append((time.monotonic(), r.headers["x-synergai-worker"]))

    def share(self, worker: str, since: float, until: float = float("inf")) -> tuple[float, int]:
        """Fraction of the answers in ``[since, until)`` that came from ``worker``, and count."""
        with self.lock:
            ws = [w for t, w in self.seen if since <= t < until]
        return (sum(w == worker for w in ws) / len(ws) if ws else 0.0), len(ws)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)
        assert not any(t.is_alive() for t in self.threads)


def test_slowed_worker_loses_its_traffic_within_seconds(stack: dict[str, Any]) -> None:
    with Load(stack["url"]) as load:
        t0 = time.monotonic()
        time.sleep(3.0)
        before, n_before = load.share("b-0", t0 + 1.0)  # after a second of warm-up
        stack["fleet"].set_slowdown("b-0", FACTOR)
        t_slow = time.monotonic()
        moved = None
        while time.monotonic() - t_slow < 10.0:  # rolling: last second mostly on a-0
            time.sleep(0.25)
            now = time.monotonic()
            share_a, n = load.share("a-0", now - 1.0)
            if n >= 10 and share_a >= 0.8:
                moved = now - t_slow
                break
        assert moved is not None, f"traffic never left b-0: {load.share('a-0', t_slow)}"
        t_after = time.monotonic()
        time.sleep(2.0)
        after, n_after = load.share("a-0", t_after)
        stack["fleet"].set_slowdown("b-0", 1.0)
    print(
        f"before the slowdown b-0 answered {before:.0%} of {n_before}; traffic moved to a-0 "
        f"{moved:.2f} s after b-0 became 3x slower; the next 2 s a-0 answered {after:.0%} "
        f"of {n_after}",
        file=sys.stderr,
    )
    assert load.errors == 0
    assert n_before >= 20 and before >= 0.8
    assert moved < 5.0
    # afterwards most traffic stays on a-0; on a loaded machine (load average 12) a-0's own
    # observed latency is inflated too and b-0 gets a share back (0.65 measured): a
    # majority is the behaviour, not 80 %
    assert n_after >= 20 and after > 0.5
