"""Gateway replicas sharing one Redis: process handles, closed-loop load, Redis sampling, figures.

Used by ``tests/integration/test_replicas.py`` / ``test_state_failures.py`` and runnable::

    python -m loadtest.replicas overhead [--seconds 8] [--concurrency 1 8]
        one real Triton worker (0.5 ms model), one gateway process with the Redis store
        (embedded Valkey on loopback) and one with the in-memory store, interleaved rounds
        in one run: the added latency of the shared state (p50 / p99).

Each gateway is a real ``synergai serve``-equivalent process (uvicorn, uvloop); the in-memory
variant is started through ``python -m loadtest.replicas _serve --store memory`` (the same
``create_app`` with :class:`~gateway.state.memory_store.MemoryStore` injected).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.core.net import free_port

__all__ = ["GatewayProcess", "Outcome", "RedisSampler", "closed_loop", "percentile"]

BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
).encode()


class GatewayProcess:
    """One gateway replica as a child process on a loopback port.

    Args:
        config: gateway config file (workers, policy).
        redis_url: the shared Redis (``None``: the process starts its own embedded Valkey).
        env: extra environment (``SYNERGAI_*``).
        store: ``redis`` (``synergai serve``) or ``memory`` (in-memory store, comparisons).
        log: where the process writes its output.
    """

    def __init__(
        self,
        config: Path,
        redis_url: str | None,
        *,
        env: Mapping[str, str] | None = None,
        store: str = "redis",
        log: Path | None = None,
    ) -> None:
        self.port = free_port()
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SYNERGAI_") and k != "REDIS_URL"
        }
        base |= {"SYNERGAI_HOST": "127.0.0.1", "SYNERGAI_LOG_LEVEL": "warning"}
        if redis_url:
            base["REDIS_URL"] = redis_url
        base |= dict(env or {})
        if store == "memory":
            cmd = [sys.executable, "-m", "loadtest.replicas", "_serve", str(config), str(self.port)]
        else:
            cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
                   "--port", str(self.port), "--grpc-port", str(free_port())]  # fmt: skip
        self._log = open(log or os.devnull, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=base, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until ``/v2/health/ready`` answers 200.

        Raises:
            RuntimeError: the process exited or did not get ready in time.
        """
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway on {self.port} did not get ready")
            time.sleep(0.1)

    def kill(self) -> None:
        """``kill -9``: no drain, no release."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


@dataclass
class Outcome:
    """One request as the client saw it (times on the client's monotonic clock)."""

    start: float
    end: float
    status: int  # 0: the connection failed
    gateway: int
    worker: str = ""


@dataclass
class _Live:
    outcomes: list[Outcome] = field(default_factory=list)
    dead: set[int] = field(default_factory=set)


async def closed_loop(
    urls: Sequence[str],
    model: str,
    concurrency: int,
    seconds: float,
    *,
    dead: set[int] | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[Outcome]:
    """``concurrency`` clients, client ``i`` on gateway ``i % len(urls)``, back to back.

    A client whose gateway refused a connection records it (status 0), marks the gateway
    dead (in ``dead``, shared with the caller) and moves to a live one: the requests a killed
    gateway had in flight are the only ones that fail.
    """
    live = _Live(dead=dead if dead is not None else set())
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    stop_at = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def client(i: int) -> None:
            g = i % len(urls)
            while time.monotonic() < stop_at:
                if g in live.dead:
                    alive = [j for j in range(len(urls)) if j not in live.dead]
                    if not alive:
                        return
                    g = alive[i % len(alive)]
                t0 = time.monotonic()
                try:
                    async with session.post(
                        f"{urls[g]}/v2/models/{model}/infer", data=BODY, headers=hdrs
                    ) as r:
                        await r.read()
                        worker = r.headers.get("x-synergai-worker", "")
                        live.outcomes.append(Outcome(t0, time.monotonic(), r.status, g, worker))
                except (aiohttp.ClientError, OSError):
                    live.outcomes.append(Outcome(t0, time.monotonic(), 0, g))
                    live.dead.add(g)

        await asyncio.gather(*(client(i) for i in range(concurrency)))
    return live.outcomes


class RedisSampler:
    """Reads every worker's ``out`` from Redis every ``period_s`` (one pipelined round trip).

    ``samples`` holds ``(t_before, t_after, {worker: out})`` on the client's monotonic clock.
    """

    def __init__(
        self, url: str, workers: Sequence[str], prefix: str = "synergai", period_s: float = 0.02
    ) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url, socket_timeout=0.5)
        self._workers = list(workers)
        self._prefix = prefix
        self._period = period_s
        self.samples: list[tuple[float, float, dict[str, int]]] = []
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def read(self) -> dict[str, int]:
        """Every worker's ``out`` now (raises when Redis is down)."""
        async with self._client.pipeline(transaction=False) as p:
            for w in self._workers:
                p.hget(f"{self._prefix}:w:{{{w}}}", "out")
            raw = await p.execute()
        return {w: int(v or 0) for w, v in zip(self._workers, raw, strict=True)}

    async def leases(self) -> int:
        """Live lease members over every worker."""
        n = 0
        for w in self._workers:
            n += int(await self._client.zcard(f"{self._prefix}:l:{{{w}}}"))
        return n

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            try:
                got = await self.read()
                self.samples.append((t0, time.monotonic(), got))
            except Exception:  # Redis down during a restart test: skip the sample
                self.errors += 1
            await asyncio.sleep(self._period)

    def start(self) -> None:
        """Start sampling in the running loop."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling and close the client."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._client.aclose()


def excess_over_truth(
    samples: Sequence[tuple[float, float, dict[str, int]]],
    outcomes: Sequence[Outcome],
    slack_s: float,
) -> list[tuple[float, str, int, int]]:
    """Samples where Redis's ``out`` of a worker exceeded its true in-flight count.

    True in-flight of worker ``w`` around a sample read between ``t0`` and ``t1`` is the most
    requests answered by ``w`` that were open at any instant of ``[t0 - slack_s, t1]`` at the
    client (a request opens at the client before its reservation and closes before its release,
    which runs after the answer is sent). Returns ``(t, worker, redis_out, true_max)`` rows.
    """
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for o in outcomes:
        if o.worker:
            by_worker.setdefault(o.worker, []).append((o.start, o.end))
    bad = []
    for t0, t1, outs in samples:
        lo = t0 - slack_s
        for w, out in outs.items():
            spans = [(s, e) for s, e in by_worker.get(w, ()) if s <= t1 and e >= lo]
            events = sorted([(max(s, lo), 1) for s, _ in spans] + [(e, -1) for _, e in spans])
            cur = peak = 0
            for _, d in events:
                cur += d
                peak = max(peak, cur)
            if out > peak:
                bad.append((t0, w, out, peak))
    return bad


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# -- measurement: added latency of the shared state -------------------------------------------


def _serve_memory(config: Path, port: int) -> int:
    """The gateway with the in-memory store (``_serve`` sub-command)."""
    import uvloop

    from gateway.app import AppDeps, create_app
    from gateway.core.clock import MonotonicClock
    from gateway.server import InProcessServer, inprocess_config
    from gateway.settings import load_settings
    from gateway.state.memory_store import MemoryStore

    settings = load_settings(config, port=port, grpc_port=None)
    clock = MonotonicClock()
    app = create_app(settings, AppDeps(clock=clock, store=MemoryStore(clock)))
    server = InProcessServer(inprocess_config(app, "127.0.0.1", port))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
        await server.serve()

    uvloop.run(main())
    return 0


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
        gws = {
            "redis": GatewayProcess(cfg, vk.url, log=work / "gw-redis.log"),
            "memory": GatewayProcess(cfg, None, store="memory", log=work / "gw-mem.log"),
        }
        try:
            for g in gws.values():
                g.wait_ready()
            lat: dict[tuple[str, int], list[float]] = {}
            for _ in range(rounds):
                for c in concurrencies:
                    for name, g in gws.items():
                        out = asyncio.run(closed_loop([g.url], "m", c, seconds / rounds))
                        ok = [(o.end - o.start) * 1000 for o in out if o.status == 200]
                        lat.setdefault((name, c), []).extend(ok)
            for (name, c), ms in sorted(lat.items()):
                rows.append({"store": name, "concurrency": c, "requests": len(ms),
                             "p50_ms": round(percentile(ms, 0.5), 3),
                             "p99_ms": round(percentile(ms, 0.99), 3)})  # fmt: skip
        finally:
            for g in gws.values():
                g.stop()
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_serve":
        return _serve_memory(Path(argv[1]), int(argv[2]))
    ap = argparse.ArgumentParser(prog="python -m loadtest.replicas")
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead", help="added latency of the Redis store vs in-memory")
    o.add_argument("--seconds", type=float, default=12.0)
    o.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    o.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(json.dumps(_overhead(args.seconds, args.concurrency, args.rounds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
