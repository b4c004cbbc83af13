"""Fault injection under load: ``kill -9`` one real Triton worker while requests flow.

Real Valkey (embedded), a real pool of three Triton servers, the real app on uvicorn; a
closed-loop load of 8 concurrent clients on loopback for a bounded time. One worker is killed
with SIGKILL mid-load and restarted on its ports a little later. What must hold:

* every request gets an answer: a 200, or a clean KServe error (``{"error": ...}``, 502/503/504);
  none is lost (no client-side exception), none is a 500;
* requests the dead worker never accepted (refused connections) are retried on another
  worker and succeed; for the model marked ``idempotent`` every request succeeds;
* the dead worker is out of rotation within a second of the kill (outlier ejection on the
  first refused connection, the readiness probe shortly after), and back in rotation, taking
  traffic, once restarted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.app import create_app
from gateway.embedded import EmbeddedValkey
from gateway.server import ServerThread
from gateway.settings import ModelDefaults
from gateway.testing import fleet_settings
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MS = 5.0
VICTIM = "p-1"
BODY = orjson.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
)


@pytest.fixture(scope="module")
def stack(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("faults")
    scenario = write_scenario(
        directory,
        pools=[{"name": "p", "arch": "toy", "workers": 3, "instances": 1, "rtt_ms": 0,
                "models": ["m1", "m2"]}],
        profiles={("toy", "m1"): {1: (MS, MS)}, ("toy", "m2"): {1: (MS, MS)}},
    )  # fmt: skip
    workers = triton_fleet(scenario)
    valkey = EmbeddedValkey()
    url = valkey.start()
    settings = fleet_settings(
        workers,
        directory / "profiles",
        models={
            "m1": ModelDefaults(slo_ms=500),
            "m2": ModelDefaults(slo_ms=500, idempotent=True),
        },
        policy="least_outstanding",
        redis_url=url,
        redis_timeout_s=0.5,
        health_interval_s=0.2,
    )
    server = ServerThread(create_app(settings))
    server.start()
    try:
        yield {"url": server.url, "fleet": triton_fleet.last}
    finally:
        server.stop()
        valkey.stop()


@dataclass
class Outcome:
    model: str
    status: int | None  # None: no answer at all (lost)
    worker: str
    body: bytes
    at: float


async def _client(
    session: aiohttp.ClientSession, url: str, model: str, stop: float, out: list[Outcome]
) -> None:
    while time.monotonic() < stop:
        t = time.monotonic()
        try:
            async with session.post(f"{url}/v2/models/{model}/infer", data=BODY) as r:
                body = await r.read()
                out.append(
                    Outcome(model, r.status, r.headers.get("x-synergai-worker", ""), body, t)
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.append(Outcome(model, None, "", repr(exc).encode(), t))


async def _watch(session: aiohttp.ClientSession, url: str, seen: list[tuple[float, bool]]) -> None:
    """Append the victim's routability in /synergai/v1/workers every 20 ms, until cancelled."""
    while True:
        async with session.get(f"{url}/synergai/v1/workers") as r:
            doc = await r.json()
        row = next(w for w in doc["workers"] if w["id"] == VICTIM)
        seen.append((time.monotonic(), bool(row["healthy"])))
        await asyncio.sleep(0.02)


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_kill_9_a_worker_mid_load(stack: dict[str, Any]) -> None:
    url, fleet = stack["url"], stack["fleet"]
    marks: dict[str, float] = {}

    def chaos(t0: float) -> None:
        time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
        marks["kill"] = time.monotonic()
        fleet.crash(VICTIM)
        time.sleep(1.5)
        marks["restart"] = time.monotonic()
        fleet.recover(VICTIM, timeout=30)
        marks["ready"] = time.monotonic()

    async def run() -> tuple[list[Outcome], list[tuple[float, bool]], str]:
        out: list[Outcome] = []
        seen: list[tuple[float, bool]] = []
        t0 = time.monotonic()
        th = threading.Thread(target=chaos, args=(t0,), daemon=True)
        th.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            watch = asyncio.create_task(_watch(session, url, seen))
            loads = [
                asyncio.create_task(_client(session, url, m, t0 + 4.0, out))
                for m in ("m1", "m2") for _ in range(4)
            ]  # fmt: skip
            await asyncio.gather(*loads)
            await asyncio.to_thread(th.join, 40)
            # after the restart: keep sending until the victim takes traffic again (bounded)
            stop = time.monotonic() + 8
            while time.monotonic() < stop and not any(
                o.worker == VICTIM and o.at > marks.get("ready", 1e18) for o in out
            ):
                await _client(session, url, "m1", time.monotonic() + 0.3, out)
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            async with session.get(f"{url}/metrics") as r:
                metrics = await r.text()
        return out, seen, metrics

    out, seen, metrics = asyncio.run(run())
    assert "kill" in marks and "ready" in marks, marks
    codes = Counter((o.model, o.status) for o in out)
    lost = [o for o in out if o.status is None]
    failed = [o for o in out if o.status != 200]
    print(
        f"\nfaults: sent={len(out)} ok={len(out) - len(failed)} failed={len(failed)} "
        f"lost={len(lost)} codes={dict(codes)} "
        f"retries={_sample(metrics, 'synergai_retries_total', result='sent'):.0f}"
    )
    assert not lost, lost[:3]
    for o in failed:  # clean errors only: KServe JSON, gateway codes, never a 500
        assert o.status in (502, 503, 504), (o.status, o.body)
        assert "error" in orjson.loads(o.body), o.body
    # the idempotent model loses nothing; the other only what the dead worker had accepted
    assert not [o for o in failed if o.model == "m2"], [o.body for o in failed][:3]
    assert len(failed) <= 4, [o.body for o in failed]
    assert _sample(metrics, "synergai_retries_total", result="sent") >= 1
    # out of rotation within a second of the kill ...
    out_at = next(t for t, healthy in seen if t > marks["kill"] and not healthy)
    ejections = _sample(metrics, "synergai_outlier_ejections_total", worker=VICTIM)
    print(f"faults: victim out of rotation {out_at - marks['kill']:.3f} s after the kill "
          f"(ejections {ejections:.0f})")  # fmt: skip
    assert out_at - marks["kill"] < 1.0
    assert not [o for o in out if o.worker == VICTIM and out_at < o.at < marks["restart"]]
    # ... and back in rotation, taking traffic, once restarted
    back_at = next(t for t, healthy in seen if t > marks["restart"] and healthy)
    print(f"faults: back in rotation {back_at - marks['ready']:+.3f} s after ready")
    assert any(o.worker == VICTIM and o.at > marks["ready"] for o in out)
