"""The open-loop replayer against an in-process fake KServe server (aiohttp, loopback)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from loadtest.client import Arrival
from loadtest.loops import closed_loop, connections_for, interleaved, replay


class FakeKServe:
    """Answers ``/v2/models/{m}/infer`` after ``delay_s``.

    Model ``shed`` gets 429, ``bad`` 500, ``slow`` waits 3 s (beyond the timeouts given).
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.seen: list[tuple[float, str, dict[str, str]]] = []
        self.inflight = 0
        self.max_inflight = 0

    async def infer(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        self.seen.append((time.perf_counter(), model, dict(request.headers)))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await request.read()
            await asyncio.sleep(self.delay_s if model != "slow" else 3.0)
        finally:
            self.inflight -= 1
        if model == "shed":
            return web.json_response({"error": "shed"}, status=429, headers={"Retry-After": "1"})
        if model == "bad":
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response({"outputs": []}, headers={"x-synergai-worker": "w-1"})


async def _serve(fake: FakeKServe) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", fake.infer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeKServe, list[str]]]:
    f = FakeKServe(delay_s=0.05)
    r1, u1 = await _serve(f)
    r2, u2 = await _serve(f)
    try:
        yield f, [u1, u2]
    finally:
        await r1.cleanup()
        await r2.cleanup()


async def test_open_loop_sends_on_schedule_not_after_responses(fake) -> None:
    f, urls = fake
    # 20 arrivals 10 ms apart against a 50 ms server: closed loop would take >= 1 s.
    trace = [Arrival(t_s=i * 0.01, model="m", slo_ms=500.0) for i in range(20)]
    out = await replay(trace, urls, "http", timeout_s=5)
    assert [o.status for o in out] == ["ok"] * 20
    assert f.max_inflight >= 4  # overlapping requests: nobody waited for an answer
    sends = [t for t, _, _ in f.seen]
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    # on schedule (10 ms apart), not all at once and not one answer apart (50 ms); the bounds
    # leave a loaded machine's event loop room: a late send only shortens or lengthens the
    # mean gap by its lateness / 19
    assert 0.006 <= sum(gaps) / len(gaps) <= 0.02
    assert all(45.0 <= o.latency_ms < 400.0 for o in out)
    assert {o.worker for o in out} == {"w-1"}


async def test_hints_and_round_robin_over_targets(fake) -> None:
    f, urls = fake
    trace = [
        Arrival(t_s=0.0, model="m", slo_ms=25.0, priority=2, category="frequency"),
        Arrival(t_s=0.001, model="m", slo_ms=40.5, priority=0, category="latency"),
    ]
    out = await replay(trace, urls, "http")
    assert [o.target for o in out] == [0, 1]
    headers = {h["x-slo-ms"]: h for _, _, h in f.seen}
    assert headers["25"]["x-priority"] == "2"
    assert headers["25"]["x-category"] == "frequency"
    assert headers["40.5"]["x-category"] == "latency"


async def test_statuses_shed_error_lost(fake) -> None:
    _, urls = fake
    trace = [
        Arrival(t_s=0.0, model="shed", slo_ms=100.0),
        Arrival(t_s=0.0, model="bad", slo_ms=100.0),
        Arrival(t_s=0.0, model="slow", slo_ms=100.0),
        Arrival(t_s=0.0, model="ok", slo_ms=100.0),
    ]
    out = await replay(trace, urls[:1], "http", timeout_s=2.0)  # ok on a machine at load 10
    assert [(o.status, o.code) for o in out] == [
        ("shed", "429"),
        ("error", "500"),
        ("lost", ""),
        ("ok", "200"),
    ]


async def test_unreachable_target_is_error_and_no_task_left() -> None:
    trace = [Arrival(t_s=0.0, model="m", slo_ms=10.0)]
    out = await replay(trace, ["http://127.0.0.1:9"], "http", timeout_s=1)
    assert out[0].status == "error"
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_progress_and_start_callbacks(fake) -> None:
    _, urls = fake
    trace = [Arrival(t_s=i * 0.001, model="m", slo_ms=100.0) for i in range(10)]
    seen: list[tuple[int, int]] = []
    starts: list[float] = []
    before = time.time()
    await replay(
        trace, urls, "http", on_progress=lambda d, n: seen.append((d, n)), on_start=starts.append
    )
    assert seen[-1] == (10, 10)
    assert len(starts) == 1 and before <= starts[0] <= before + 1.0


async def test_closed_loop_counts_only_after_warmup(fake) -> None:
    _, urls = fake
    r = await closed_loop(urls[0], "http", 2, 0.3, model="m", warmup_s=0.1)
    # 2 clients x 50 ms per request over 0.3 s -> ~12 requests measured (~16 with the
    # warm-up's); how many fit is taken from the pace measured in this run, so a loaded
    # machine (slower answers, fewer requests) does not decide
    n = len(r.latencies_ms)
    fit = 2 * 0.3 / (min(r.latencies_ms) / 1000.0)  # the most the window holds at that pace
    assert 2 <= n <= fit + 2, (n, fit)
    assert r.warm >= 1  # sent during the warm-up, not counted
    starts = [o.start_s for o in r.outcomes]
    assert max(starts) - min(starts) < 0.3  # all started inside the measured window
    assert r.errors == 0
    assert r.rps == pytest.approx(len(r.latencies_ms) / r.seconds)


def test_replay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="target"):
        asyncio.run(replay([], [], "http"))
    with pytest.raises(ValueError, match="protocol"):
        asyncio.run(replay([], ["http://x"], "smtp"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "timeout_s", "expected"),
    [
        (1, 0.1, 16),  # floor
        (100, 5.0, 516),  # every request of a 5 s stall in flight, + 16
        (1000, 10.0, 2048),  # cap
    ],
)
def test_connections_for(rate: int, timeout_s: float, expected: int) -> None:
    trace = [Arrival(t_s=i / rate, model="m", slo_ms=10.0) for i in range(rate * 2)]
    # float edges may put one more arrival in a one-second window
    assert expected <= connections_for(trace, timeout_s=timeout_s) <= expected + 10


async def test_closed_loop_fails_over_from_a_dead_target(fake) -> None:
    _, urls = fake
    dead: set[int] = set()
    r = await closed_loop(
        [urls[0], "http://127.0.0.1:9"], "http", 4, 0.3, model="m", warmup_s=0.0, dead=dead
    )
    assert dead == {1}
    # the two clients that started on the refusing target failed once each, then moved over
    refused = [o for o in r.outcomes if o.status != "ok"]
    assert len(refused) == 2 and {o.target for o in refused} == {1}
    assert all(o.target == 0 for o in r.outcomes if o.status == "ok")
    assert all(o.end_s >= o.start_s for o in r.outcomes)


async def test_closed_loop_without_failover_keeps_counting_errors() -> None:
    r = await closed_loop("http://127.0.0.1:9", "http", 1, 0.2, model="m", warmup_s=0.0)
    assert r.errors == len(r.outcomes) >= 2 and r.latencies_ms == []


def test_interleaved_pools_rounds_per_target() -> None:
    async def serve() -> tuple[list[web.AppRunner], list[str]]:
        f = FakeKServe(delay_s=0.01)
        runners, urls = [], []
        for _ in range(2):
            r, u = await _serve(f)
            runners.append(r)
            urls.append(u)
        return runners, urls

    import threading

    loop = asyncio.new_event_loop()
    runners, urls = loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        said: list[str] = []
        pooled = interleaved(
            [("a", "http", urls[0]), ("b", "http", urls[1])],
            1,
            0.1,
            2,
            model="m",
            warmup_s=0.0,
            say=said.append,
        )
    finally:
        for r in runners:
            asyncio.run_coroutine_threadsafe(r.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert set(pooled) == {"a", "b"} and len(said) == 4  # 2 rounds x 2 targets, alternating
    assert said[0].endswith(": a") and said[1].endswith(": b") and said[2].endswith(": a")
    for res in pooled.values():
        assert res.errors == 0 and res.latencies_ms
        assert res.seconds == pytest.approx(0.2, abs=0.1)  # two 0.1 s rounds pooled
