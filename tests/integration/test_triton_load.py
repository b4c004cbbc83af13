"""The load read from a real Triton worker's ``/metrics`` matches the truth (ensembles included).

An emulated worker serves every public model as an ensemble on one python model
(``workers/repository.py``), so Triton counts each request twice: on the ensemble and on the
composing model. Summed over every model, Little's law read twice the load; the reconciler
then took the extra for load no gateway sent and invented waits on idle workers.

Here a real 4-slot worker with a 200 ms model is read by the real :class:`TritonScraper`
(it learns which models are ensembles from Triton's model configuration): idle, it must read 0;
with two closed-loop clients (truth: at most 2 requests in the server, about 2 while they run)
it must read between 1 and 2.6, far from the 4 the double count gave (capped at the 4 slots),
and the reconciler, told that 2 requests are leased, must see no external load worth a request;
idle again, 0. The bounds are wide and independent of the machine's load: a loaded machine
only adds gaps between a client's requests, which lowers the truth, and the bound below it
(1) holds as long as each client keeps a request in the server half of the time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from gateway.core.clock import MonotonicClock
from gateway.routing.types import WorkerInfo
from gateway.state.reconcile import Reconciler, TritonScraper
from gateway.state.store import WorkerLoad
from gateway.state.triton_metrics import derive, parse_metrics
from workers.repository import DEVICE_MODEL
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MS = 200.0
CLIENTS = 2
BODY = orjson.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)


class ClosedLoop:
    """``n`` clients, each sending its next request as soon as the previous one answered."""

    def __init__(self, url: str, n: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.done = 0
        self.errors = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while not self.stop.is_set():
                ok = c.post("/v2/models/m/infer", content=BODY).status_code == 200
                with self._lock:
                    self.done += ok
                    self.errors += not ok

    def __enter__(self) -> ClosedLoop:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads)


@pytest.fixture(scope="module")
def worker(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerInfo]:
    directory = tmp_path_factory.mktemp("triton_load")
    scenario = write_scenario(
        directory,
        pools=[{"name": "p", "arch": "toy", "workers": 1, "instances": 4, "rtt_ms": 0,
                "models": ["m"]}],
        profiles={("toy", "m"): {1: (MS, MS)}},
    )  # fmt: skip
    (w,) = triton_fleet(scenario)
    yield WorkerInfo(
        w.id, w.pool, w.arch, w.models, w.instances, url=w.http_url, metrics_url=w.metrics_url
    )


class RecordingScraper(TritonScraper):
    """The real scraper, keeping the pages it read (to compare with the old sum)."""

    pages: list[tuple[float, str]]

    async def _get(self, url: str) -> str:
        text = await super()._get(url)
        self.pages = [*getattr(self, "pages", [])[-1:], (self._clock.now(), text)]
        return text

    def summed_over_every_model(self, instances: int) -> float:
        """What the two last pages read when summed over every model (before the fix)."""
        (ta, a), (tb, b) = self.pages
        return derive(parse_metrics(a, ta), parse_metrics(b, tb), instances).in_server


async def _read(scraper: TritonScraper, wid: str, interval_s: float) -> float:
    """Two scrapes ``interval_s`` apart: the second's ``in_server``."""
    await scraper.tick()
    await asyncio.sleep(interval_s)
    await scraper.tick()
    return scraper.loads[wid].in_server


def test_in_server_matches_the_truth_idle_and_under_closed_loop_load(worker: WorkerInfo) -> None:
    async def scenario() -> dict[str, float]:
        clock = MonotonicClock()
        rec = Reconciler(clock, max_age_s=30.0)
        scraper = RecordingScraper(lambda: [worker], rec, clock, timeout_s=5.0)
        out: dict[str, float] = {}
        try:
            out["idle"] = await _read(scraper, worker.id, 1.0)
            with ClosedLoop(worker.url, CLIENTS) as load:
                await asyncio.sleep(1.0)  # both clients past their first request
                rec.note_shared(worker.id, WorkerLoad(CLIENTS, CLIENTS * MS))
                # 2 s: ~20 completions, so the interval's edges move the figure by ~5 %
                out["busy"] = await _read(scraper, worker.id, 2.0)
                ext = rec.external(worker.id)
                out["external"] = ext.outstanding if ext is not None else float("nan")
                out["compute_ms"] = scraper.loads[worker.id].compute_ms
                out["summed"] = scraper.summed_over_every_model(worker.instances)
            out["errors"] = load.errors
            out["done"] = load.done
            deadline = time.monotonic() + 30.0  # the last requests finish, then two scrapes
            while True:
                out["after"] = await _read(scraper, worker.id, 0.5)
                if out["after"] == 0 or time.monotonic() > deadline:
                    break
            out["lookup_failures"] = scraper.lookup_failures
            kinds = scraper.kinds(worker.id)
            out["ensembles"] = sum(kinds.values())
            out["device_known"] = kinds.get(DEVICE_MODEL) is False
        finally:
            await scraper.close()
        return out

    out = asyncio.run(scenario())
    print(f"\nreadings: {out}")
    assert out["errors"] == 0 and out["done"] > 0
    assert out["lookup_failures"] == 0 and out["ensembles"] == 1 and out["device_known"]
    assert out["idle"] == 0.0
    # truth <= 2 (two clients); the double count read ~4 (capped at the 4 slots)
    assert 1.0 <= out["busy"] <= 2.6, out
    assert out["compute_ms"] == pytest.approx(MS, rel=0.5), out  # the device's, not a sum
    # the same two pages summed over every model, ensembles included: twice (up to the slots)
    assert out["summed"] == pytest.approx(min(4.0, 2.0 * out["busy"]), rel=0.02), out
    assert out["external"] < 0.6, out  # 2 leased, 2 in the server: nothing foreign
    assert out["after"] == 0.0, out
