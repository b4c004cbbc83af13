"""The live page in headless chromium: against a fake gateway, and against the real one."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from gateway.ui import ANY_PRIORITY, CounterSample, PoolLatency, ui_router

pytestmark = pytest.mark.browser

POOLS = {"edge-agx": "jetson-agx-orin", "cloud-x86": "xeon-8380", "cloud-gpu": "a100"}


class FakeStats:
    """Counters that grow by a fixed amount per poll (two models, two priorities)."""

    def __init__(self) -> None:
        self.n = 0

    async def sample(self) -> CounterSample:
        self.n += 1
        n = self.n
        return CounterSample(
            requests={("resnet50", ANY_PRIORITY): 60.0 * n, ("bert-base", ANY_PRIORITY): 25.0 * n},
            violations={
                ("resnet50", "0"): 3.0 * n,
                ("resnet50", "1"): 1.0 * n,
                ("bert-base", "0"): 0.5 * n * n,
            },
            pools={
                "edge-agx": PoolLatency(30.0 * n, 30.0 * n * 21.0, 30.0 * n, 30.0 * n * 1.05),
                "cloud-x86": PoolLatency(40.0 * n, 40.0 * n * 35.0, 40.0 * n, 40.0 * n * 0.9),
                "cloud-gpu": PoolLatency(15.0 * n, 15.0 * n * 9.0, 15.0 * n, 15.0 * n * 1.3),
            },
        )


def fake_gateway(stale: bool = False, down: bool = False) -> FastAPI:
    """A tiny app with the UI router and a fake ``/synergai/v1/workers`` (DESIGN.md §6)."""
    app = FastAPI()
    ticks = itertools.count(0, 2.0)
    app.include_router(ui_router(FakeStats(), clock=lambda: next(ticks)))
    polls = itertools.count()

    @app.get("/synergai/v1/workers")
    async def workers() -> Any:
        if down:
            return JSONResponse({"error": "upstream gone"}, status_code=503)
        k = next(polls)
        rows = []
        for pool, arch in POOLS.items():
            for i in range(2):
                out = (k + i * 3 + len(pool)) % 7
                rows.append(
                    {
                        "id": f"{pool}-{i}",
                        "pool": pool,
                        "arch": arch,
                        "healthy": not (pool == "edge-agx" and i == 1),
                        "outstanding": out,
                        "work_ms": 12.5 * out,
                        "predicted_wait_ms": 12.5 * out + 1.0,
                        "correction": {"resnet50": 1.0 + 0.1 * i, "bert-base": 0.7},
                        "staleness_s": 9.5 if stale else 0.2,
                    }
                )
        return {"policy": "synergai", "stale": stale, "workers": rows}

    return app


def _count(pattern: str, dom: str) -> int:
    return len(re.findall(pattern, dom))


def test_live_page_renders_workers_and_charts(
    chromium: Any, serve: Callable[[Any], Any], artifacts: Path
) -> None:
    with serve(fake_gateway()) as base:
        shot = artifacts / "ui-live-fake.png"
        dom = chromium.render(f"{base}/synergai/ui?interval=500", screenshot=shot)
    assert int(re.search(r'data-updates="(\d+)"', dom).group(1)) >= 3  # type: ignore[union-attr]
    assert 'data-state="ok"' in dom
    assert _count(r'<tr class="(?:up|down)" data-worker="', dom) == 6
    assert 'data-worker="edge-agx-1"' in dom and "✖ down" in dom
    assert '<b id="policy" class="badge">synergai</b>' in dom
    assert _count(r'data-pool="', dom) == 3
    # Live numbers in the charts: series paths with values and one bar pair per pool.
    assert 'data-series="resnet50"' in dom and 'data-series="bert-base p0"' in dom
    assert re.search(r'class="series" data-series="resnet50" data-last="30\.0"', dom), dom[-3000:]
    assert _count(r'class="bar-rect" data-group="', dom) == 6
    assert 'data-group="cloud-gpu" data-series="actual" data-value="9.00"' in dom
    assert "resnet50 \u00d71.10" in dom
    assert 'id="banner" class="banner" role="alert" hidden=""' in dom


def test_live_page_banner_when_state_is_stale(
    chromium: Any, serve: Callable[[Any], Any], artifacts: Path
) -> None:
    with serve(fake_gateway(stale=True)) as base:
        dom = chromium.render(
            f"{base}/synergai/ui?interval=500", screenshot=artifacts / "ui-live-stale.png"
        )
    assert 'data-state="stale"' in dom
    assert 'class="banner stale"' in dom and "Shared state is stale" in dom
    assert 'class="num staleness stale-val">9.5<' in dom


def test_live_page_banner_when_gateway_unreachable(
    chromium: Any, serve: Callable[[Any], Any], artifacts: Path
) -> None:
    with serve(fake_gateway(down=True)) as base:
        dom = chromium.render(
            f"{base}/synergai/ui?interval=500", screenshot=artifacts / "ui-live-down.png"
        )
    assert 'data-state="down"' in dom
    assert 'class="banner down"' in dom and "Gateway unreachable" in dom


def _load(base: str, stop: threading.Event, slo_ms: str, priority: str) -> None:
    """Closed-loop KServe v2 requests until ``stop``; a tight SLO makes violations."""
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4}]}
    headers = {"x-slo-ms": slo_ms, "x-priority": priority}
    with httpx.Client(base_url=base, timeout=5.0) as client:
        while not stop.is_set():
            client.post("/v2/models/resnet50/infer", json=body, headers=headers)


@pytest.mark.integration
def test_live_page_against_real_gateway(
    chromium: Any, serve: Callable[[Any], Any], artifacts: Path, tmp_path: Path
) -> None:
    """Real Triton fleet + embedded Valkey + the real app, under a short closed-loop load."""
    try:
        from gateway.app import create_app
        from gateway.settings import ModelDefaults, Settings, WorkerSpec
        from workers.testing import FleetFactory, write_scenario
    except ImportError as exc:  # pragma: no cover - until the gateway and fleet land
        pytest.skip(f"real gateway not available: {exc}")
    pools = [
        {"name": "edge", "arch": "edge-arch", "workers": 1, "models": ["resnet50"]},
        {"name": "cloud", "arch": "cloud-arch", "workers": 1, "models": ["resnet50"]},
    ]
    profiles = {
        ("edge-arch", "resnet50"): {1: (6.0, 8.0)},
        ("cloud-arch", "resnet50"): {1: (3.0, 4.0)},
    }
    scenario = write_scenario(tmp_path, pools, profiles)
    fleet = FleetFactory()
    stop = threading.Event()
    try:
        workers = fleet(scenario)
        settings = Settings(
            workers=[WorkerSpec(**w.as_config()) for w in workers],
            models={"resnet50": ModelDefaults(slo_ms=50.0)},
            profiles=tmp_path / "profiles",
            host="127.0.0.1",
            grpc_port=None,
            log_level="warning",
        )
        with serve(create_app(settings)) as base:
            loaders = [
                threading.Thread(target=_load, args=(base, stop, slo, prio), daemon=True)
                for slo, prio in (("1000", "0"), ("1000", "0"), ("4", "1"))
            ]
            for t in loaders:
                t.start()
            # The stats endpoint keeps history from its first poll on: poll as an open page would.
            with httpx.Client(base_url=base, timeout=5.0) as client:
                for _ in range(3):
                    assert client.get("/synergai/v1/stats").json()["available"]
                    time.sleep(1.02)
                stats = client.get("/synergai/v1/stats").json()
            dom = chromium.render(
                f"{base}/synergai/ui?interval=1000",
                screenshot=artifacts / "ui-live-gateway.png",
                budget_ms=2000,
                size=(1400, 1250),
            )
            stop.set()
            for t in loaders:
                t.join(timeout=10)
    finally:
        stop.set()
        left = fleet.close()
    assert not left, f"processes left running: {left}"
    assert stats["requests_rps"]["resnet50"][-1] > 1, stats
    assert int(re.search(r'data-updates="(\d+)"', dom).group(1)) >= 1  # type: ignore[union-attr]
    assert _count(r'<tr class="(?:up|down)" data-worker="', dom) == 2
    assert '<b id="policy" class="badge">synergai</b>' in dom
    assert _count(r'data-pool="', dom) == 2
    assert re.search(r'class="series" data-series="resnet50" data-last="[1-9]', dom)
    assert 'data-series="resnet50 p1"' in dom  # violations of the 4 ms SLO
    assert _count(r'class="bar-rect" data-group="(?:edge|cloud)" data-series="actual"', dom) == 2
