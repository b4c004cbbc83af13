"""Reconciler blend, ReconciledStore over a MemoryStore, TritonScraper against a loopback page."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.core.clock import ManualClock
from gateway.core.net import free_port
from gateway.routing.types import WorkerInfo
from gateway.state.memory_store import MemoryStore
from gateway.state.reconcile import ReconciledStore, Reconciler, TritonScraper
from gateway.state.store import Lease, WorkerLoad
from gateway.state.triton_metrics import TritonLoad


def _t(at: float, queued: float, running: float, compute_ms: float = 10.0) -> TritonLoad:
    return TritonLoad(at, queued, running, compute_ms, math.nan)


@pytest.mark.parametrize(
    ("redis_out", "peak", "queued", "running", "want_out", "want_work"),
    [
        (2, 2, 1.0, 1.0, 2, 20.0),  # Triton holds what the gateways leased: nothing added
        (2, 2, 4.0, 1.0, 5, 50.0),  # 3 requests nobody leased
        (0, 6, 3.0, 2.0, 0, 0.0),  # a burst just drained: the interval peak covers it
        (1, 1, 0.0, 0.0, 1, 10.0),  # Triton lags (issue 5927): never below Redis
    ],
)
def test_blend_adds_only_what_triton_holds_beyond_redis(
    redis_out: int, peak: int, queued: float, running: float, want_out: int, want_work: float
) -> None:
    clock = ManualClock(10.0)
    rec = Reconciler(clock, max_age_s=5.0)
    rec.note_shared("w", WorkerLoad(peak, peak * 10.0))
    rec.note_shared("w", WorkerLoad(redis_out, redis_out * 10.0))
    rec.observe("w", _t(10.0, queued, running))
    got = rec.blend("w", WorkerLoad(redis_out, redis_out * 10.0))
    assert got.outstanding == want_out and got.work_ms == pytest.approx(want_work)


def test_external_load_goes_stale_and_needs_a_redis_figure() -> None:
    clock = ManualClock(0.0)
    rec = Reconciler(clock, max_age_s=2.0)
    assert rec.observe("w", _t(0.0, 5, 0)) is None  # no Redis figure yet: cannot tell
    rec.note_shared("w", WorkerLoad(0, 0.0))
    ext = rec.observe("w", _t(0.0, 5, 0))
    assert ext is not None and ext.outstanding == 5
    got = rec.blend("w", WorkerLoad(1, 1.0))
    assert got.outstanding == 6 and got.external == 5  # leases: 1, Triton's extra: 5
    clock.advance(2.5)
    assert rec.blend("w", WorkerLoad(1, 1.0)) == WorkerLoad(1, 1.0)
    rec.forget("w")
    assert rec.external("w") is None


async def test_reconciled_store_blends_every_answer() -> None:
    clock = ManualClock(1.0)
    inner = MemoryStore(clock)
    rec = Reconciler(clock)
    store = ReconciledStore(inner, rec)
    await store.start()
    lease = Lease("w", "g:1", 5_000)
    assert await store.reserve(lease) == WorkerLoad(1, 5.0, (5.0,))
    rec.observe("w", _t(1.0, 3.0, 1.0, 2.0))  # 4 in Triton, 1 leased: 3 external
    # the external work is queued too: the one slot frees 6 ms later
    assert await store.snapshot(["w"]) == {"w": WorkerLoad(4, 11.0, (11.0,), external=3)}
    assert await store.release(lease) == WorkerLoad(3, 6.0, (11.0,), external=3)  # as predicted
    assert await store.expire_leases(["w"]) == 0
    inner.down = True
    assert not store.available
    assert await store.reserve(lease) is None and await store.snapshot(["w"]) is None
    await store.close()


class FakeTriton:
    """Triton's ``/metrics`` and ``GET /v2/models/{name}/config`` on loopback (as 2.51 answers).

    ``text`` is the metrics page (``"500"``: an error); ``configs`` maps a model to its
    ``platform`` (absent: 400 with Triton's error body, as for an unknown model); ``down``
    makes the config endpoint answer 503; ``lookups`` counts config requests per model.
    """

    def __init__(self) -> None:
        self.text = ""
        self.configs: dict[str, str] = {}
        self.down = False
        self.lookups: dict[str, int] = {}
        self.base = ""

    @property
    def url(self) -> str:
        return f"{self.base}/metrics"

    async def metrics(self, _: web.Request) -> web.Response:
        if self.text == "500":
            return web.Response(status=500)
        return web.Response(text=self.text)

    async def config(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.lookups[name] = self.lookups.get(name, 0) + 1
        if self.down:
            return web.Response(status=503)
        platform = self.configs.get(name)
        if platform is None:
            err = {"error": f"Request for unknown model: '{name}' is not found"}
            return web.json_response(err, status=400)
        doc = {"name": name, "platform": platform,
               "backend": "python" if platform == "" else ""}  # fmt: skip
        if platform == "ensemble":
            doc["ensemble_scheduling"] = {"step": [{"model_name": "dev"}]}  # type: ignore[assignment]
        return web.json_response(doc)


@pytest.fixture
async def triton() -> AsyncIterator[FakeTriton]:
    fake = FakeTriton()
    app = web.Application()
    app.router.add_get("/metrics", fake.metrics)
    app.router.add_get("/v2/models/{name}/config", fake.config)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.base = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def _page(pending: int, execs: int, compute_us: int, model: str = "m") -> str:
    lab = f'{{model="{model}",version="1"}}'
    return (
        f"nv_inference_pending_request_count{lab} {pending}\n"
        f"nv_inference_exec_count{lab} {execs}\nnv_inference_count{lab} {execs}\n"
        f"nv_inference_compute_infer_duration_us{lab} {compute_us}\n"
    )


async def test_scraper_feeds_the_reconciler(triton: FakeTriton) -> None:
    clock = ManualClock(0.0)
    rec = Reconciler(clock, max_age_s=5.0)
    triton.configs = {"m": ""}
    info = WorkerInfo("w", "p", "a", ("m",), 4, url=triton.base, metrics_url=triton.url)
    fleet = [info, WorkerInfo("nometrics", "p", "a", ("m",))]
    scraper = TritonScraper(lambda: fleet, rec, clock, timeout_s=2.0)
    rec.note_shared("w", WorkerLoad(1, 10.0))
    triton.text = _page(0, 0, 0)
    await scraper.tick()
    assert scraper.loads["w"].in_server == 0
    clock.advance(1.0)
    triton.text = _page(2, 200, 2_000_000)  # 200 x 10 ms in 1 s: 2 running, 2 queued
    await scraper.tick()
    assert scraper.loads["w"].in_server == pytest.approx(4.0)
    assert rec.blend("w", WorkerLoad(1, 10.0)) == WorkerLoad(4, pytest.approx(40.0), external=3)  # type: ignore[arg-type]
    assert triton.lookups == {"m": 1}  # classified once, cached
    triton.text = "500"
    await scraper.tick()
    assert scraper.failures == 1
    fleet.pop(0)  # discovery removed it: forgotten
    await scraper.tick()
    assert "w" not in scraper.loads and rec.external("w") is None
    await scraper.close()


def _ensemble_page(pending: int, requests: int, compute_us: int) -> str:
    """Every request sent to ensemble ``e`` (one step): Triton counts it on ``e`` and ``dev``."""
    return _page(0, requests, compute_us, "e") + _page(pending, requests, compute_us, "dev")


async def test_scraper_leaves_ensembles_out(triton: FakeTriton) -> None:
    clock = ManualClock(0.0)
    rec = Reconciler(clock, max_age_s=5.0)
    triton.configs = {"e": "ensemble", "dev": ""}
    info = WorkerInfo("w", "p", "a", ("e",), 4, url=triton.base, metrics_url=triton.url)
    scraper = TritonScraper(lambda: [info], rec, clock, timeout_s=2.0)
    rec.note_shared("w", WorkerLoad(1, 10.0))
    triton.text = _ensemble_page(0, 0, 0)
    await scraper.tick()
    clock.advance(1.0)
    # 100 requests of 10 ms in 1 s: one running (two before the fix), one queued
    triton.text = _ensemble_page(1, 100, 1_000_000)
    await scraper.tick()
    assert scraper.loads["w"].running == pytest.approx(1.0)
    assert scraper.loads["w"].in_server == pytest.approx(2.0)
    assert triton.lookups == {"dev": 1, "e": 1}
    assert scraper.kinds("w") == {"dev": False, "e": True} and scraper.kinds("x") == {}
    # a model loaded later is classified when it first shows up, not before
    clock.advance(1.0)
    triton.configs["e2"] = "ensemble"
    triton.text = _ensemble_page(0, 200, 2_000_000) + _page(0, 50, 500_000, "e2")
    await scraper.tick()
    assert triton.lookups == {"dev": 1, "e": 1, "e2": 1}
    assert scraper.loads["w"].running == pytest.approx(1.0)  # e2 left out: still the device's
    await scraper.close()


async def test_a_failed_lookup_hides_the_model_and_never_fails_the_scrape(
    triton: FakeTriton,
) -> None:
    clock = ManualClock(0.0)
    rec = Reconciler(clock, max_age_s=5.0)
    triton.configs = {"e": "ensemble", "dev": ""}
    triton.down = True
    info = WorkerInfo("w", "p", "a", ("e",), 4, url=triton.base, metrics_url=triton.url)
    scraper = TritonScraper(
        lambda: [info], rec, clock, timeout_s=2.0, classify_retry_s=5.0, classify_every_s=60.0
    )
    triton.text = _ensemble_page(3, 0, 0)
    await scraper.tick()
    assert scraper.failures == 0 and scraper.lookup_failures == 1
    assert scraper.loads["w"].in_server == 0  # unknown kinds: nothing counted, nothing doubled
    clock.advance(1.0)
    await scraper.tick()  # within the retry delay: no lookup
    assert triton.lookups == {"dev": 1, "e": 1}
    triton.down = False
    clock.advance(5.0)
    await scraper.tick()
    assert triton.lookups == {"dev": 2, "e": 2} and scraper.loads["w"].in_server == 3
    # classified again every classify_every_s, and at once after a restart
    clock.advance(60.0)
    await scraper.tick()
    assert triton.lookups == {"dev": 3, "e": 3}
    triton.text = _ensemble_page(0, 500, 5_000_000)
    clock.advance(1.0)
    await scraper.tick()
    triton.text = _ensemble_page(0, 2, 20_000)  # counters went backwards: restarted
    clock.advance(1.0)
    await scraper.tick()
    assert triton.lookups == {"dev": 4, "e": 4}
    await scraper.close()
