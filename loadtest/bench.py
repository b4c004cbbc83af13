"""``synergai bench``: the scenario's seeded trace replayed live, policy by policy.

What runs (all on loopback, all children reaped on exit, Ctrl-C or SIGTERM):

1. an embedded Valkey, shared by every gateway replica;
2. the scenario's emulated fleet of real Triton servers (``workers.fleet.Fleet``, ``time_scale``
   applied, ``rtt_ms`` through the delay relay, faults on the fleet clock);
3. per policy, ``--gateways N`` fresh ``synergai serve`` replicas with that policy
   (``SYNERGAI_POLICY``), Redis flushed first. **Policies are switched by restarting the
   gateways**, so no policy inherits another's online corrections, EWMAs or leases, exactly as
   each simulated policy starts cold;
4. the open-loop replayer (:mod:`loadtest.client`) sends the trace of
   :func:`loadtest.sim.trace.build_trace` (the simulator's own generator, same seed) round
   robin over the replicas, each request with ``x-slo-ms``, ``x-priority``, ``x-category``; the
   fleet's clock (speed steps, faults) is restarted at the trace's t=0;
5. between policies the fleet drains: faults and slowdowns are cleared, and the next policy
   starts only when no worker holds queued or executing requests and no gateway has any in
   flight (:mod:`workers.idle`, said in the progress output); a server still busy after
   :data:`IDLE_TIMEOUT_S` (an overload the last policy caused) or down after a crash fault is
   restarted. So a policy never pays for the previous one's backlog, whatever the duration.

Output: the JSON of DESIGN.md §3 with ``"mode": "live"`` (``--json``: exactly one document on
stdout), a table, ``--plot`` PNG, ``--html`` report; ``--compare-sim`` adds the simulator's
results on the same (duration-adjusted) scenario and the agreement test of
:mod:`loadtest.bench_fidelity`. Live latencies are real milliseconds (``time_scale`` applied);
``duration_s`` is real seconds of trace per policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from loadtest.bench_stats import summarize
from loadtest.bench_workload import live_trace, scenario_for_run
from loadtest.client import Arrival, Outcome, Payloads, Protocol
from loadtest.loops import replay

__all__ = ["LiveRun", "machine", "run_bench", "run_live", "run_sim_policies"]


def machine() -> dict[str, Any]:
    """What the numbers were measured on (CPU model, cores, 1-minute load average, Python).

    The load average matters here: the machine is shared, and other processes' CPU use shows
    up directly in live latencies.
    """
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so every ``finally`` stops its children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _run_async(coro: Any) -> Any:
    """``asyncio.run`` on uvloop when installed (less client CPU, so less client lag)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


class LiveRun:
    """Results of one live benchmark: the JSON document and the per-request data behind it.

    Attributes:
        doc: the DESIGN.md §3 document (``mode: live``).
        timeline: per-policy time series for plots and the HTML report.
        trace: the arrivals replayed (real seconds).
        outcomes: per policy, one outcome per arrival.
        workers: worker id -> pool.
    """

    def __init__(
        self,
        doc: dict[str, Any],
        timeline: dict[str, Any],
        trace: list[Arrival],
        outcomes: dict[str, list[Outcome]],
        workers: dict[str, str],
    ) -> None:
        self.doc = doc
        self.timeline = timeline
        self.trace = trace
        self.outcomes = outcomes
        self.workers = workers


IDLE_TIMEOUT_S = 30.0
"""The longest wait for an idle fleet after a policy; what is still busy then is restarted."""


def _inflight(gateways: Sequence[Any]) -> int:
    """Requests in flight over every replica (``synergai_inflight_requests``; unreachable: 0)."""
    total = 0.0
    for g in gateways:
        for line in g.metrics().splitlines():
            if line.startswith("synergai_inflight_requests "):
                with contextlib.suppress(ValueError):
                    total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _settle_fleet(
    fleet: Any, gateways: Sequence[Any], say: Any, timeout_s: float = IDLE_TIMEOUT_S
) -> Any:
    """After a policy: stop faults, clear slowdowns, wait for an idle fleet (workers.idle).

    The fault schedule is stopped first (a crash restart in flight completes), so no fault
    fires while the next policy's gateways start; the next trace restarts the fleet clock and
    the schedule (``Fleet.reset_clock``). Then, with the policy's gateways still up (so they
    collect their answers), it waits until no worker holds queued or executing requests and no
    gateway has any in flight. Returns the :class:`workers.idle.Idle`; the caller stops the
    gateways, then restarts whatever is still busy or down (:func:`_restart_laggards`).
    """
    from workers.idle import wait_idle

    injector = fleet.injector
    if injector is not None:
        injector.stop()
    for w in fleet.workers:
        with contextlib.suppress(Exception):
            fleet.set_slowdown(w.id, 1.0)
    idle = wait_idle(fleet.backlog, timeout_s, inflight=lambda: _inflight(gateways))
    say(idle.describe())
    return idle


def _restart_laggards(fleet: Any, idle: Any, say: Any) -> None:
    """Restart the servers still busy or down after :func:`_settle_fleet` (empties a queue)."""
    laggards = [*idle.busy, *idle.down]
    if laggards:
        say(f"restarting {len(laggards)} busy or down server(s): {', '.join(laggards)}")
        for worker in laggards:
            fleet.recover(worker)


def run_live(
    scenario: Any,
    policies: Sequence[str],
    *,
    protocol: Protocol = "http",
    gateways: int = 1,
    workdir: Path | None = None,
    console: Console | None = None,
    timeout_s: float | None = None,
    via: str = "gateway",
    gateway_settings: dict[str, Any] | None = None,
) -> LiveRun:
    """Run the live benchmark of an (unscaled, duration-adjusted) scenario.

    Args:
        scenario: a loaded ``gateway.scenario.Scenario``.
        policies: policy names, run in this order.
        protocol: ``http`` or ``grpc`` (the replayer's protocol to the gateways).
        gateways: gateway replicas sharing Redis.
        workdir: logs and configs (default: a temporary directory, removed afterwards).
        console: where progress goes (default: stderr).
        timeout_s: client timeout per request (default ``max(5, 20 x largest SLO)`` s).
        via: ``gateway`` (our gateway replicas) or ``envoy`` (a real Envoy with ``synergai
            epp`` picking, :class:`gateway.epp.stack.EnvoyStack`; ``gateways`` is ignored).
        gateway_settings: extra settings of every gateway (``{"overhead_ms": x}``).

    Returns:
        The document and the timeline (for plots and the HTML report).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from loadtest.bench_report import timeline
    from loadtest.bench_stack import LiveStack, decision_us_p50

    console = console or Console(stderr=True)
    scaled = scenario.scaled()
    trace: list[Arrival] = live_trace(scenario)
    duration = float(scaled.duration_s)
    timeout = timeout_s or max(5.0, 20.0 * max(w.slo_ms for w in scaled.workload) / 1000.0)
    own = workdir is None
    wd = Path(workdir or tempfile.mkdtemp(prefix="synergai-bench-"))

    def say(msg: str) -> None:
        console.print(f"[dim]{msg}[/dim]")

    doc: dict[str, Any] = {
        "scenario": scenario.name,
        "mode": "live",
        "seed": scenario.seed,
        "duration_s": round(duration, 3),
        "policies": {},
        "meta": {
            "protocol": protocol,
            "gateways": gateways if via == "gateway" else 0,
            "via": via,
            "time_scale": scenario.time_scale,
            "requests_per_policy": len(trace),
            "client_timeout_s": timeout,
            "policy_switch": "gateways restarted per policy, Redis flushed, fleet idle",
            "machine": machine(),
        },
    }
    tl: dict[str, Any] = {"bin_s": 1.0, "policies": {}}
    all_outcomes: dict[str, list[Outcome]] = {}
    pools: dict[str, str] = {}
    payloads = Payloads()
    stack = LiveStack(
        scenario, wd, replicas=gateways, progress=True, via=via, settings=gateway_settings
    )
    try:
        with _sigterm_as_interrupt():
            stack.start()
            fleet = stack.fleet
            if fleet.injector is not None:  # faults start with each trace (on_start), not now
                fleet.injector.stop()
            pools = {w.id: w.pool for w in fleet.workers}
            say(
                f"{len(fleet.workers)} workers ready; {len(trace)} requests over {duration:.1f} s"
                f" per policy, {f'{gateways} gateway(s)' if via == 'gateway' else 'Envoy + epp'}"
                f", {protocol}"
            )
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                for name in policies:
                    task = progress.add_task(f"{name:<18}", total=len(trace))
                    gws = stack.start_gateways(name)
                    targets = [g.url if protocol == "http" else g.grpc_target for g in gws]

                    def on_progress(done: int, total: int, _task: Any = task) -> None:
                        progress.update(_task, completed=done)

                    outcomes: list[Outcome] = _run_async(
                        replay(
                            trace,
                            targets,
                            protocol,
                            timeout_s=timeout,
                            payloads=payloads,
                            on_progress=on_progress,
                            on_start=fleet.reset_clock,
                        )
                    )
                    dec = decision_us_p50([g.metrics() for g in gws])
                    all_outcomes[name] = outcomes
                    doc["policies"][name] = summarize(trace, outcomes, duration, dec)
                    tl["policies"][name] = timeline(trace, outcomes, pools, duration)
                    progress.update(task, completed=len(trace))
                    idle = _settle_fleet(fleet, gws, say)
                    stack.stop_gateways()
                    _restart_laggards(fleet, idle, say)
    finally:
        stack.stop()
        if own:
            import shutil

            shutil.rmtree(wd, ignore_errors=True)
    return LiveRun(doc, tl, trace, all_outcomes, pools)


def run_sim_policies(scenario: Any, policies: Sequence[str]) -> dict[str, Any]:
    """The simulator's ``policies`` mapping for the same scenario (same seed, same trace)."""
    from loadtest.sim.runner import run_scenario

    run = run_scenario(scenario, list(policies), scenario.seed)
    return dict(run.document["policies"])


def overhead_mode(value: str | None, scenario: Any, compare_sim: bool) -> str | float | None:
    """What ``--overhead-ms`` asks for: ``"auto"``, a constant (ms), ``"scenario"`` or None.

    Unset: the scenario's own ``overhead_ms`` when it sets one, else ``auto`` with
    ``--compare-sim`` and nothing without. ``0`` turns it off.

    Raises:
        ValueError: neither ``auto`` nor a number >= 0.
    """
    if value is None:
        if scenario.overhead.p50 > 0:
            return "scenario"
        return "auto" if compare_sim else None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        ms = float(value)
    except ValueError:
        raise ValueError(f"--overhead-ms must be 'auto' or a number of ms, not {value!r}") from None
    if not ms >= 0:
        raise ValueError(f"--overhead-ms must be >= 0, not {value!r}")
    return None if ms == 0 else ms


def resolve_overhead(
    mode: str | float | None, scenario: Any, protocol: str, err: Console
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The scenario the simulator runs, the live gateways' extra settings, and the record.

    * ``auto``: measured now at the run's mean request rate
      (:func:`loadtest.bench_calibrate.calibrate`): the simulator gets the client's ``{p50,
      p99}``, the gateways ``overhead_ms`` = the part their own latency contains;
    * a number: the simulator gets that constant; the gateways are not told (what share of it
      their own measurement contains is unknown);
    * ``scenario``: the scenario's ``overhead_ms`` as it is, gateways not told;
    * None: no overhead anywhere (the scenario's own is cleared).
    """
    from gateway.scenario import Overhead
    from loadtest.bench_workload import keep_private

    if mode == "scenario":
        o = scenario.overhead
        return scenario, {}, {"source": "scenario", "sim": _oh_doc(o), "gateway_ms": 0.0}
    if mode is None:
        sc = keep_private(scenario, scenario.model_copy(update={"overhead_ms": 0.0}))
        return sc, {}, {"source": "off", "sim": _oh_doc(sc.overhead), "gateway_ms": 0.0}
    if mode == "auto":
        from loadtest.bench_calibrate import calibrate

        rate = len(live_trace(scenario)) / max(1e-9, float(scenario.scaled().duration_s))
        err.print(
            f"[dim]measuring the live path's fixed cost at {rate:.0f} requests/s "
            "(calibration scenario) ...[/dim]"
        )
        cal = calibrate(protocol, rate_rps=rate)
        o = cal.overhead()
        gw = round(cal.gateway_ms, 3)
        err.print(
            f"[dim]overhead p50 {cal.p50_ms:.2f} ms, p99 {cal.p99_ms:.2f} ms (mean "
            f"{cal.mean_ms:.2f}), of which on the device slot p50 {cal.device_p50_ms:.2f}, p99 "
            f"{cal.device_p99_ms:.2f}; the gateway's own share {gw:.2f} ms; load "
            f"{cal.loadavg[0]} -> {cal.loadavg[1]}[/dim]"
        )
        sc = keep_private(scenario, scenario.model_copy(update={"overhead_ms": o}))
        meta = {"source": "auto", "sim": _oh_doc(o), "gateway_ms": gw}
        meta["calibration"] = cal.as_dict()
        meta["saturated"] = cal.saturated
        if cal.saturated:
            err.print(
                f"[yellow]this machine cannot carry {rate:.0f} requests/s through the live "
                f"path (a 5 ms request took {o.p50 + 6:.0f} ms at the median): the live run "
                "measures the machine, not the routing; use a larger --time-scale[/yellow]"
            )
        return sc, {"overhead_ms": gw}, meta
    o = Overhead(p50=float(mode))
    sc = keep_private(scenario, scenario.model_copy(update={"overhead_ms": float(mode)}))
    return sc, {}, {"source": "flag", "sim": _oh_doc(o), "gateway_ms": 0.0}


def _oh_doc(o: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "p50": o.p50,
        "p99": o.p99 if o.p99 is not None else o.p50,
        "mean": round(o.mean_ms, 3),
    }
    dev = getattr(o, "device", None)
    if dev is not None:
        doc["device"] = {"p50": dev.p50, "p99": dev.p99 if dev.p99 is not None else dev.p50}
    return doc


def _default_policies() -> list[str]:
    from gateway.routing.registry import policy_names

    return list(policy_names())


def run_bench(
    scenario: Path,
    policies: list[str] | None,
    duration: float | None,
    protocol: str,
    gateways: int,
    compare_sim: bool,
    json_out: bool,
    plot: Path | None,
    html: Path | None,
    time_scale: float | None = None,
    via: str = "gateway",
    overhead: str | None = None,
) -> int:
    """``synergai bench``: see the module docstring. Returns the exit code.

    ``time_scale`` overrides the scenario's (``--time-scale``); ``via="envoy"`` runs every
    policy through a real Envoy with ``synergai epp`` picking (``--via envoy``); ``overhead``
    is ``--overhead-ms`` (:func:`resolve_overhead`). Exit codes: 0 done, 2 bad arguments or
    scenario, 1 the stack failed, 130 interrupted.
    """
    from gateway.yamlio import FormatError

    err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    out = err if json_out else Console(width=None if sys.stdout.isatty() else 120)
    if protocol not in ("http", "grpc"):
        err.print(f"[red]--protocol must be http or grpc, not {protocol!r}[/red]")
        return 2
    if gateways < 1:
        err.print("[red]--gateways must be >= 1[/red]")
        return 2
    if via not in ("gateway", "envoy"):
        err.print(f"[red]--via must be gateway or envoy, not {via!r}[/red]")
        return 2
    try:
        sc = scenario_for_run(scenario, duration, time_scale)
        names = policies or _default_policies()
        known = set(_default_policies())
        unknown = [p for p in names if p not in known]
        if unknown:
            err.print(
                f"[red]unknown or simulator-only policy {', '.join(unknown)}; live policies: "
                f"{', '.join(sorted(known))}[/red]"
            )
            return 2
    except (FormatError, ValueError, OSError) as exc:
        err.print(f"[red]{exc}[/red]")
        return 2
    proto: Protocol = "grpc" if protocol == "grpc" else "http"
    try:
        mode = overhead_mode(overhead, sc, compare_sim)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        return 2
    try:
        sc, gw_settings, oh_meta = resolve_overhead(mode, sc, protocol, err)
    except Exception as exc:
        err.print(f"[red]overhead calibration failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    sim: dict[str, Any] | None = None
    if compare_sim:  # first: it takes seconds, and a failure should not waste the live run
        try:
            sim = run_sim_policies(sc, names)
        except Exception as exc:
            err.print(f"[red]simulator failed: {type(exc).__name__}: {exc}[/red]")
            return 1
    t0 = time.monotonic()
    try:
        run = run_live(
            sc,
            names,
            protocol=proto,
            gateways=gateways,
            console=err,
            via=via,
            gateway_settings=gw_settings,
        )
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; every child stopped[/yellow]")
        return 130
    except Exception as exc:
        err.print(f"[red]bench failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    live = run.doc
    live["meta"]["wall_s"] = round(time.monotonic() - t0, 1)
    live["meta"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    live["meta"]["overhead"] = oh_meta
    result: dict[str, Any] = live
    if sim is not None:
        from loadtest.bench_fidelity import fidelity

        result = {
            "scenario": sc.name,
            "sim": sim,
            "live": live["policies"],
            "fidelity": fidelity(sim, live["policies"]),
            "meta": {**live["meta"], "seed": sc.seed, "duration_s": live["duration_s"]},
        }
    from loadtest.bench_report import plot_compare, plot_live, print_tables

    print_tables(result, out)
    if oh_meta["source"] != "off":
        o = oh_meta["sim"]
        dev = o.get("device")
        on_slot = f", on the slot p50 {dev['p50']:g} / p99 {dev['p99']:g} ms" if dev else ""
        out.print(
            f"live path overhead ({oh_meta['source']}): simulator p50 {o['p50']:g} ms, p99 "
            f"{o['p99']:g} ms{on_slot}; gateways' overhead_ms {oh_meta['gateway_ms']:g}"
        )
    if plot is not None:
        if compare_sim:
            plot_compare(result, plot)
            plot_live(live, plot.with_name(plot.stem + "-live" + plot.suffix), run.timeline)
        else:
            plot_live(live, plot, run.timeline)
        err.print(f"plot written to {plot}")
    if html is not None:
        from loadtest.report import write_html_report

        tl: Any = {"live": run.timeline} if compare_sim else run.timeline
        write_html_report(result, html, timeline=tl)
        err.print(f"report written to {html}")
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        sys.stdout.flush()
    return 0
