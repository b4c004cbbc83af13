"""``synergai demo``: Valkey + an emulated fleet of real Triton servers + the gateway + a load.

The README's first command. Everything runs in this process or as its children, and every
child is stopped on the way out (normal end, Ctrl-C, SIGTERM, error):

1. an embedded Valkey (``gateway.embedded``) and the scenario's fleet (``workers.fleet``);
2. the gateway (REST on ``--port``; the gRPC front door on ``--grpc-port`` when installed) on
   uvicorn in this event loop, routing with the scenario's (time-scaled) profiles;
3. the scenario's seeded open-loop trace (``loadtest.loops.replay``) for a few policies in
   turn, each on a fresh routing view and an idle fleet (no worker holding queued or executing
   requests, the gateway nothing in flight: :mod:`workers.idle`; the previous policy's backlog
   must not count against the next), with a table per policy and per worker;
4. then it serves until Ctrl-C / SIGTERM, or exits with ``--exit-after-load``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.app import AppDeps, create_app
from gateway.demo_report import print_banner, print_policy, print_summary
from gateway.embedded import EmbeddedValkey
from gateway.observability.logging import configure_logging
from gateway.routing.registry import make_policy, policy_names
from gateway.scenario import FormatError, Scenario, load_scenario
from gateway.server import InProcessServer, inprocess_config
from gateway.service import InferenceService
from gateway.settings import ModelDefaults, Settings, WorkerSpec

if TYPE_CHECKING:
    from workers.fleet import Fleet

__all__ = ["DEMO_POLICIES", "run_demo"]

DEMO_POLICIES = ("round_robin", "least_outstanding", "synergai")
"""Policies the demo compares, in order (those not registered are skipped)."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _settings(sc: Scenario, workers: list[Any], port: int, grpc_port: int, url: str) -> Settings:
    scaled = sc.scaled()
    models = {
        w.model: ModelDefaults(slo_ms=w.slo_ms, priority=w.priority, category=w.category)
        for w in scaled.workload
    }
    policies = [p for p in DEMO_POLICIES if p in policy_names()]
    return Settings(
        workers=[WorkerSpec(**w.as_config()) for w in workers],
        models=models,
        policy=policies[-1] if policies else "round_robin",
        host="127.0.0.1",
        port=port,
        grpc_port=grpc_port,
        redis_url=url,
        seed=sc.seed,
        log_level="warning",
        # The demo compares policies by lateness: round_robin overloads the Pis on purpose, and
        # their answers should count as late, not be cut off by the SLO-derived timeout.
        min_timeout_s=30.0,
    )


CLIENT_TIMEOUT_S = 10.0
"""The load's client gives up on a request after this long (it counts as lost)."""
IDLE_TIMEOUT_S = 45.0
"""The longest wait for an idle fleet between policies: the demo gateway's upstream timeout
(``min_timeout_s`` 30 s) bounds how long it holds a request, plus margin for Triton's queue."""


async def _settle(service: InferenceService, fleet: Fleet, name: str, stop: asyncio.Event) -> None:
    """Wait until no worker holds work and the gateway has nothing in flight (workers.idle).

    A server still busy at the bound while the gateway waits for nothing (requests the gateway
    gave up on, still in Triton's queue) is restarted, which empties its queue.
    """
    from workers.idle import wait_idle

    _say(f"waiting for an idle fleet before {name} ...")
    idle = await asyncio.to_thread(
        wait_idle,
        fleet.backlog,
        IDLE_TIMEOUT_S,
        inflight=lambda: service.inflight,
        cancelled=stop.is_set,
    )
    if stop.is_set():
        return
    _say(idle.describe())
    stuck = [*idle.busy, *idle.down] if idle.inflight == 0 else list(idle.down)
    if stuck:
        _say(f"restarting {', '.join(stuck)} so {name} starts on an empty queue")
        for worker in stuck:
            await asyncio.to_thread(fleet.recover, worker)
    if not idle.idle and idle.inflight:
        _say(f"the gateway still waits for {idle.inflight} request(s): {name}'s table may pay")


async def _load(
    service: InferenceService,
    fleet: Fleet,
    sc: Scenario,
    url: str,
    duration: float,
    stop: asyncio.Event,
) -> int:
    """Replay the trace once per demo policy, each on an idle fleet; failed requests (errors)."""
    from loadtest.bench_stats import summarize
    from loadtest.bench_workload import live_trace, scenario_for_run
    from loadtest.loops import replay

    run = scenario_for_run(sc, duration)
    trace = live_trace(run)
    book = sc.scaled().profile_book
    results: dict[str, dict[str, Any]] = {}
    errors = 0
    for name in [p for p in DEMO_POLICIES if p in policy_names()]:
        await _settle(service, fleet, name, stop)
        if stop.is_set():
            break
        service.switch_policy(make_policy(name, book, seed=sc.seed), fresh_view=True)
        _say(f"load: {name}, {len(trace)} requests over {duration:g} s ...")
        t0 = time.perf_counter()
        replaying = asyncio.ensure_future(replay(trace, [url], "http", timeout_s=CLIENT_TIMEOUT_S))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({replaying, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not replaying.done():
            replaying.cancel()
            break
        outcomes = replaying.result()
        summary = summarize(trace, outcomes, duration)
        summary["wall_s"] = round(time.perf_counter() - t0, 1)
        results[name] = summary
        errors += int(summary["errors"])
        print_policy(name, trace, outcomes, summary)
    if results:
        print_summary(results)
    return errors


async def _demo(
    scenario: Path, duration: float, exit_after_load: bool, port: int, grpc_port: int
) -> int:
    t_start = time.perf_counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        sc = load_scenario(scenario)
    except FormatError as exc:
        _say(f"synergai demo: {exc}")
        return 2
    from workers.fleet import Fleet

    valkey = EmbeddedValkey()
    fleet = Fleet(sc, progress=True)
    server: InProcessServer | None = None
    serving: asyncio.Task[None] | None = None
    try:
        _say("starting embedded Valkey ...")
        redis_url = await asyncio.to_thread(valkey.start)
        workers = await asyncio.to_thread(fleet.start)
        settings = _settings(sc, workers, port, grpc_port, redis_url)
        app = create_app(settings, AppDeps(profiles=sc.scaled().profile_book))
        server = InProcessServer(inprocess_config(app, "127.0.0.1", port))
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            if serving.done() or stop.is_set():
                _say(f"synergai demo: the gateway could not start on port {port}")
                return 1
            await asyncio.sleep(0.02)
        ready_s = time.perf_counter() - t_start
        service: InferenceService = app.state.service
        print_banner(settings, workers, sc, ready_s, redis_url)
        errors = await _load(service, fleet, sc, f"http://127.0.0.1:{port}", duration, stop)
        if not exit_after_load and not stop.is_set():
            _say(f"serving on http://127.0.0.1:{port} — Ctrl-C to stop")
            await stop.wait()
        return 0 if errors == 0 else 1
    finally:
        _say("stopping ...")
        if server is not None and serving is not None:
            server.should_exit = True
            await asyncio.wait({serving}, timeout=15)
        await asyncio.to_thread(fleet.stop)
        await asyncio.to_thread(valkey.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        _say("stopped: gateway, Triton fleet, Valkey")


def run_demo(
    scenario: Path, duration: float, exit_after_load: bool, port: int, grpc_port: int
) -> int:
    """Run the demo; the exit code (0: every request answered, 1: errors, 2: bad scenario)."""
    configure_logging("warning")
    import uvloop

    return int(uvloop.run(_demo(scenario, duration, exit_after_load, port, grpc_port)))
