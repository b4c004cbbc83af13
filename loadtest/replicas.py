"""Gateway replicas sharing one Redis: Redis sampling against the truth, and a figure.

Used by ``tests/integration/test_replicas.py`` (with the one gateway
process helper, :class:`loadtest.gateway_process.GatewayProcess`, and the one closed loop,
:func:`loadtest.loops.closed_loop`) and runnable::

    python -m loadtest.replicas overhead [--seconds 8] [--concurrency 1 8] [--json]
        one real Triton worker (0.5 ms model), one gateway process with the Redis store
        (embedded Valkey on loopback) and one with the in-memory store (``store="memory"``),
        interleaved rounds in one run: the added latency of the shared state (p50 / p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.bench_stats import percentile
from loadtest.client import Outcome, Protocol
from loadtest.gateway_process import GatewayProcess
from loadtest.loops import interleaved

__all__ = ["RedisSampler", "excess_over_truth", "main"]


class RedisSampler:
    """Reads every worker's ``out`` from Redis every ``period_s`` (one pipelined round trip).

    ``samples`` holds ``(t_before, t_after, {worker: out})`` on the client's monotonic clock;
    ``t_after - t_before`` of a sample is one Redis round trip as this (loaded) machine serves
    it (:attr:`max_round_trip_s`).

    Every wait is bounded: a read by ``read_timeout_s``, the sampling loop by ``max_s`` (it
    stops by itself), :meth:`stop` by ``stop_timeout_s``. The loop stops on a flag, not by
    cancellation: a cancel that lands inside redis-py's pipeline on Python 3.11 may come back
    as a ``ConnectionError`` (28 of 200 cancels at a random point of a read, on a quiet
    machine), which the loop must swallow (Redis down is a sample it skips), so a cancelled
    loop could run on forever and ``await task`` never return (issue 16: the 180 s hang).
    """

    def __init__(
        self,
        url: str,
        workers: Sequence[str],
        prefix: str = "synergai",
        period_s: float = 0.02,
        *,
        read_timeout_s: float = 2.0,
        max_s: float = 120.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url, socket_timeout=0.5)
        self._workers = list(workers)
        self._prefix = prefix
        self._period = period_s
        self._read_timeout = read_timeout_s
        self._max_s = max_s
        self._stop_timeout = stop_timeout_s
        self._stopping = False
        self.samples: list[tuple[float, float, dict[str, int]]] = []
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def max_round_trip_s(self) -> float:
        """The longest read of any sample (seconds; 0 before the first)."""
        return max((t1 - t0 for t0, t1, _ in self.samples), default=0.0)

    async def read(self) -> dict[str, int]:
        """Every worker's ``out`` now (raises when Redis is down or slower than the bound)."""
        async with asyncio.timeout(self._read_timeout):
            async with self._client.pipeline(transaction=False) as p:
                for w in self._workers:
                    p.hget(f"{self._prefix}:w:{{{w}}}", "out")
                raw = await p.execute()
        return {w: int(v or 0) for w, v in zip(self._workers, raw, strict=True)}

    async def leases(self) -> int:
        """Live lease members over every worker."""
        n = 0
        async with asyncio.timeout(self._read_timeout):
            for w in self._workers:
                n += int(await self._client.zcard(f"{self._prefix}:l:{{{w}}}"))
        return n

    async def placements(self) -> int:
        """Placements (the shared queue's per-request entries) over every worker."""
        n = 0
        async with asyncio.timeout(self._read_timeout):
            for w in self._workers:
                n += int(await self._client.hlen(f"{self._prefix}:p:{{{w}}}"))
        return n

    async def queue_ms(self) -> float:
        """The longest time (ms) any slot of the shared shadow queue is still booked for, now.

        Read with the server's ``TIME`` in the same pipeline (the queue holds server-clock µs).
        """
        async with asyncio.timeout(self._read_timeout):
            async with self._client.pipeline(transaction=False) as p:
                p.time()
                for w in self._workers:
                    p.hgetall(f"{self._prefix}:w:{{{w}}}")
                got = await p.execute()
        sec, usec = got[0]
        now = int(sec) * 1_000_000 + int(usec)
        left = 0
        for h in got[1:]:
            for k, v in h.items():
                k = k.decode() if isinstance(k, bytes) else str(k)
                if k[:1] == "f" and k[1:].isdigit():
                    left = max(left, int(float(v)) - now)
        return left / 1000.0

    async def _run(self) -> None:
        end = time.monotonic() + self._max_s
        while not self._stopping and time.monotonic() < end:
            t0 = time.monotonic()
            try:
                got = await self.read()
                self.samples.append((t0, time.monotonic(), got))
            except Exception:  # Redis down during a restart test: skip the sample
                self.errors += 1
            await asyncio.sleep(self._period)

    def start(self) -> None:
        """Start sampling in the running loop (for at most ``max_s``)."""
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling and close the client, within ``stop_timeout_s``.

        Raises:
            RuntimeError: the loop did not stop in time (it is cancelled and left behind).
        """
        task, self._task = self._task, None
        self._stopping = True
        try:
            if task is not None:
                done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
                if not done:
                    task.cancel()
                    await asyncio.wait({task}, timeout=1.0)
                    raise RuntimeError(
                        f"the Redis sampler did not stop within {self._stop_timeout} s"
                    )
                task.result()  # re-raise what ended it, if anything
        finally:
            closing = asyncio.ensure_future(self._client.aclose())
            await asyncio.wait({closing}, timeout=self._stop_timeout)
            if not closing.done():
                closing.cancel()


def excess_over_truth(
    samples: Sequence[tuple[float, float, dict[str, int]]],
    outcomes: Sequence[Outcome],
    lag_s: float,
) -> list[tuple[float, str, int, int]]:
    """Samples where Redis's ``out`` of a worker exceeded its true in-flight count.

    Redis counts a request from its reservation (after the client sent it) until its release,
    which runs after the answer is sent and may land up to ``lag_s`` after the client saw the
    answer. A sample read between ``t0`` and ``t1`` shows Redis at one instant ``T`` of
    ``[t0, t1]``, so the most it may count for worker ``w`` is::

        max over T in [t0, t1] of  #{requests r answered by w : start_r <= T <= end_r + lag_s}

    (each request's span is *extended* by the lag; a request that ended just before another
    one started may still be counted beside it). Returns ``(t, worker, redis_out, true_max)``
    rows.
    """
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for o in outcomes:
        if o.worker:
            by_worker.setdefault(o.worker, []).append((o.start_s, o.end_s + lag_s))
    bad = []
    for t0, t1, outs in samples:
        for w, out in outs.items():
            spans = [(s, e) for s, e in by_worker.get(w, ()) if s <= t1 and e >= t0]
            # opening before closing at the same instant: spans are closed intervals
            events = sorted([(max(s, t0), 0) for s, _ in spans] + [(e, 1) for _, e in spans])
            cur = peak = 0
            for _, kind in events:
                cur += 1 if kind == 0 else -1
                peak = max(peak, cur)
            if out > peak:
                bad.append((t0, w, out, peak))
    return bad


# -- measurement: added latency of the shared state -------------------------------------------


def _overhead(seconds: float, concurrencies: Sequence[int], rounds: int) -> dict[str, Any]:
    from gateway.embedded import EmbeddedValkey
    from workers.fleet import Fleet, write_gateway_config
    from workers.testing import write_scenario

    work = Path(tempfile.mkdtemp(prefix="synergai-replicas-"))
    scen = write_scenario(
        work,
        [{"name": "p", "arch": "a", "workers": 1, "instances": 4, "models": ["m"]}],
        {("a", "m"): {1: (0.5, 0.5)}},
    )
    rows: list[dict[str, Any]] = []
    with Fleet(scen) as fleet, EmbeddedValkey() as vk:
        cfg = write_gateway_config(fleet.workers, work / "gw.yaml")
        text = cfg.read_text() + "policy: least_outstanding\nprofiles: profiles\n"
        cfg.write_text(text)
        with (
            GatewayProcess(cfg, work, redis_url=vk.url, name="redis") as redis_gw,
            GatewayProcess(cfg, work, store="memory", name="memory") as memory_gw,
        ):
            gws = {"redis": redis_gw, "memory": memory_gw}
            lat: dict[tuple[str, int], list[float]] = {}
            for _ in range(rounds):
                for c in concurrencies:
                    targets: list[tuple[str, Protocol, str]] = [
                        (name, "http", g.url) for name, g in gws.items()
                    ]
                    runs = interleaved(targets, c, seconds / rounds, 1, model="m", warmup_s=0.0)
                    for name, res in runs.items():
                        lat.setdefault((name, c), []).extend(res.latencies_ms)
            for (name, c), ms in sorted(lat.items()):
                rows.append({"store": name, "concurrency": c, "requests": len(ms),
                             "p50_ms": round(percentile(ms, 50) or math.nan, 3),
                             "p99_ms": round(percentile(ms, 99) or math.nan, 3)})  # fmt: skip
    added = {}
    for c in concurrencies:
        r = {x["store"]: x for x in rows if x["concurrency"] == c}
        added[str(c)] = {
            "p50_ms": round(r["redis"]["p50_ms"] - r["memory"]["p50_ms"], 3),
            "p99_ms": round(r["redis"]["p99_ms"] - r["memory"]["p99_ms"], 3),
        }
    return {"mode": "shared_state_overhead", "rows": rows, "added_by_redis": added,
            "loadavg": os.getloadavg()}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m loadtest.replicas")
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead", help="added latency of the Redis store vs in-memory")
    o.add_argument("--seconds", type=float, default=12.0)
    o.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    o.add_argument("--rounds", type=int, default=3)
    o.add_argument("--json", action="store_true", help="only the JSON document (no table)")
    args = ap.parse_args(argv)
    out = _overhead(args.seconds, args.concurrency, args.rounds)
    if not args.json:
        print(f"{'store':8s} {'c':>3s} {'requests':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
        for r in out["rows"]:
            print(f"{r['store']:8s} {r['concurrency']:3d} {r['requests']:9d} "
                  f"{r['p50_ms']:8.3f} {r['p99_ms']:8.3f}")  # fmt: skip
        for c, a in out["added_by_redis"].items():
            print(f"added by Redis at c={c}: p50 {a['p50_ms']:+.3f} ms, p99 {a['p99_ms']:+.3f} ms")
        print(f"load average {out['loadavg']}")
    print(json.dumps(out, indent=None if not args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
