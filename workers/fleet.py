"""A scenario's whole emulated fleet: every pool x worker as a real Triton server.

:class:`Fleet` starts all servers of a scenario in parallel (one per worker, ids
``<pool>-<i>``), puts a delaying relay (:mod:`workers.netem`) in front of the pools with a
non-zero ``rtt_ms``, and runs a :class:`FaultInjector` that applies the scenario's ``faults`` on
the fleet clock: ``crash`` SIGKILLs the server at ``at_s`` and restarts it on the same ports
``for_s`` later; ``slowdown`` multiplies its service times by ``factor`` for ``for_s`` (through
the server's control file, read by the model on each request). The fleet clock also drives each
pool's ``speed`` schedule; it starts when the fleet is ready and :meth:`Fleet.reset_clock`
restarts it (a benchmark calls it when its trace starts).

``run_workers`` is ``synergai workers --scenario F``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import yaml

from workers import reaper
from workers.launcher import (
    PROTOCOLS,
    TritonServer,
    free_ports,
    start_servers,
    stop_servers,
)
from workers.netem import DelayProxy, Route
from workers.repository import EmulatedModel, ServerSpec

__all__ = [
    "Fault",
    "FaultInjector",
    "Fleet",
    "WorkerSpec",
    "load_fleet_scenario",
    "run_workers",
    "write_gateway_config",
]

_NO_ORIGIN_STEP = -1e9
"""``at_s`` that stands for "always" in a serialized speed schedule (a constant speed)."""


@dataclass(frozen=True)
class WorkerSpec:
    """One running emulated worker, as the gateway and the tests see it.

    ``http_url``/``grpc_url`` include the pool's emulated network (the relay) when ``rtt_ms`` > 0;
    ``direct_http_url``/``direct_grpc_url`` reach Triton without it (overhead benchmarks).
    ``metrics_url`` is always direct.
    """

    id: str
    pool: str
    arch: str
    index: int
    instances: int
    rtt_ms: float
    models: tuple[str, ...]
    http_url: str
    grpc_url: str
    metrics_url: str
    direct_http_url: str
    direct_grpc_url: str
    protocols: tuple[str, ...] = PROTOCOLS

    def as_config(self) -> dict[str, Any]:
        """This worker's entry in the gateway's static worker list."""
        return {
            "id": self.id,
            "pool": self.pool,
            "arch": self.arch,
            "url": self.http_url,
            "grpc_url": self.grpc_url,
            "metrics_url": self.metrics_url,
            "instances": self.instances,
            "rtt_ms": self.rtt_ms,
            "models": list(self.models),
        }


@dataclass(frozen=True)
class Fault:
    """A fault on one server, on the fleet clock (seconds)."""

    at_s: float
    server: str
    kind: str
    for_s: float | None = None
    factor: float = 1.0


def write_gateway_config(workers: Sequence[WorkerSpec], path: Path) -> Path:
    """Write the gateway's static worker list (``workers: [{id, pool, arch, url, ...}]``).

    Returns:
        ``path``.
    """
    doc = {"workers": [w.as_config() for w in workers]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _speed_schedule(pool: Any) -> list[tuple[float, float]]:
    speed = pool.speed
    if isinstance(speed, int | float):
        return [(_NO_ORIGIN_STEP, float(speed))]
    return [(float(s.at_s), float(s.factor)) for s in speed]


def load_fleet_scenario(scenario: Any, time_scale: float | None = None) -> Any:
    """A scenario (path or loaded object) with ``time_scale`` (or the override) applied."""
    from gateway.scenario import Scenario, load_scenario

    sc: Scenario = load_scenario(Path(scenario)) if isinstance(scenario, str | Path) else scenario
    if time_scale is not None and time_scale != sc.time_scale:
        book, path = sc.profile_book, sc.path
        sc = sc.model_copy(update={"time_scale": time_scale})
        sc._book, sc._path = book, path
    return sc.scaled()


class FaultInjector:
    """Applies faults on the fleet clock from a background thread.

    Slowdowns that overlap multiply. A crash restart waits for readiness (bounded) in this
    thread; a restart that fails is reported on stderr and the server stays down.
    """

    def __init__(self, fleet: Fleet, faults: Sequence[Fault]) -> None:
        self._fleet = fleet
        self._events: list[tuple[float, int, str, Fault]] = []
        for i, f in enumerate(faults):
            self._events.append((f.at_s, i, "begin", f))
            if f.for_s is not None:
                self._events.append((f.at_s + f.for_s, i, "end", f))
        self._events.sort(key=lambda e: (e[0], e[2] == "begin", e[1]))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: dict[str, list[float]] = {}
        self._locks: dict[str, threading.Lock] = {f.server: threading.Lock() for f in faults}
        self.applied: list[tuple[float, str, str, str]] = []
        """``(t_s, phase, kind, server)`` as applied, for tests and logs."""

    def start(self, origin_monotonic: float) -> None:
        """Run the schedule with t=0 at ``origin_monotonic`` (``time.monotonic()``)."""
        self.stop()
        self._stop = threading.Event()
        self._active = {}
        self._thread = threading.Thread(
            target=self._run,
            args=(origin_monotonic, self._stop),
            name="fault-injector",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop applying faults (faults in progress stay as they are)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=70)
            self._thread = None

    def _run(self, origin: float, stop: threading.Event) -> None:
        workers: list[threading.Thread] = []
        for t, _, phase, fault in self._events:
            if stop.wait(max(0.0, origin + t - time.monotonic())):
                break
            if fault.kind == "crash":
                # A kill or a restart takes a while; the schedule must not wait for it.
                th = threading.Thread(
                    target=self._apply_logged, args=(origin, phase, fault), daemon=True
                )
                th.start()
                workers.append(th)
            else:
                self._apply_logged(origin, phase, fault)
        for th in workers:
            th.join(timeout=70)

    def _apply_logged(self, origin: float, phase: str, fault: Fault) -> None:
        t = time.monotonic() - origin
        try:
            with self._locks[fault.server]:  # per server: a restart elsewhere never waits
                self._apply(phase, fault)
            self.applied.append((t, phase, fault.kind, fault.server))
        except Exception as exc:  # keep the schedule going; report
            print(f"fault {phase} {fault} failed: {exc}", file=sys.stderr)

    def _apply(self, phase: str, fault: Fault) -> None:
        server = self._fleet.server(fault.server)
        if fault.kind == "crash":
            if phase == "begin":
                server.kill()
            else:
                server.restart(timeout=60)
            return
        active = self._active.setdefault(fault.server, [])
        if phase == "begin":
            active.append(fault.factor)
        elif fault.factor in active:
            active.remove(fault.factor)
        product = 1.0
        for f in active:
            product *= f
        server.set_control(slowdown=product)


_RELAY_TRIES = 3
"""Starts of the delay relay on fresh ports before giving up: its ports were free when chosen,
but another process may bind one first (as :meth:`workers.launcher.TritonServer.wait_ready`
retries Triton's)."""


@dataclass
class _Member:
    spec: WorkerSpec
    server: TritonServer
    routes: list[Route] = field(default_factory=list)


class Fleet:
    """The running fleet of one scenario; a context manager that stops every child on exit.

    Args:
        scenario: a loaded ``gateway.scenario.Scenario`` or a path to one.
        time_scale: overrides the scenario's ``time_scale``.
        workdir: where repositories, control files and logs go (default: a new temp dir,
            removed on stop).
        inject_faults: run the scenario's faults (tests may drive faults by hand instead).
        startup_timeout: seconds to wait for every server to be ready.
        progress: print progress lines to stderr.
    """

    def __init__(
        self,
        scenario: Any,
        *,
        time_scale: float | None = None,
        workdir: Path | None = None,
        inject_faults: bool = True,
        startup_timeout: float = 90.0,
        progress: bool = False,
    ) -> None:
        self.scenario = load_fleet_scenario(scenario, time_scale)
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="synergai-fleet-"))
        self._inject = inject_faults
        self._timeout = startup_timeout
        self._progress = progress
        self._members: dict[str, _Member] = {}
        self._proxy: DelayProxy | None = None
        self._injector: FaultInjector | None = None
        self.origin_epoch: float | None = None
        self.started_s: float | None = None
        """Seconds from :meth:`start` to every server ready."""

    # -- start / stop ----------------------------------------------------------------------
    def server_specs(self) -> list[tuple[Any, int, ServerSpec]]:
        """``(pool, index, ServerSpec)`` of every server the scenario asks for."""
        book = self.scenario.profile_book
        out = []
        for pool in self.scenario.pools:
            models = []
            for m in pool.models:
                prof = book.get(pool.arch, m)
                if prof is None:
                    raise ValueError(f"pool {pool.name}: no profile for {m} on {pool.arch}")
                models.append(EmulatedModel.from_profile(prof, m))
            for i in range(pool.workers):
                name = f"{pool.name}-{i}"
                seed = (self.scenario.seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31
                spec = ServerSpec(
                    name=name,
                    models=models,
                    instances=pool.instances,
                    speed=_speed_schedule(pool),
                    seed=seed,
                )
                out.append((pool, i, spec))
        return out

    def _say(self, msg: str) -> None:
        if self._progress:
            print(msg, file=sys.stderr, flush=True)

    def start(self) -> list[WorkerSpec]:
        """Start every server (in parallel), the relay and the fault schedule.

        Returns:
            The workers, in scenario order.

        Raises:
            workers.launcher.TritonStartError: a server did not start (all are stopped).
        """
        t0 = time.monotonic()
        plan = self.server_specs()
        stubs = sum(s.instances for _, _, s in plan)
        self._say(f"starting {len(plan)} Triton servers ({stubs} device stubs) in {self.workdir}")
        try:
            servers = start_servers([s for _, _, s in plan], self.workdir, timeout=self._timeout)
            by_name = {s.name: s for s in servers}
            for attempt in range(_RELAY_TRIES):  # a relay port taken meanwhile: new ports
                routes: list[Route] = []
                for pool, i, spec in plan:
                    server = by_name[spec.name]
                    rtt = float(pool.rtt_ms or 0.0)
                    http_url, grpc_url = server.http_url, server.grpc_url
                    member_routes: list[Route] = []
                    if rtt > 0:
                        lh, lg = free_ports(2)
                        member_routes = [
                            Route(lh, server.ports.http, rtt / 2000.0),
                            Route(lg, server.ports.grpc, rtt / 2000.0),
                        ]
                        http_url, grpc_url = f"http://127.0.0.1:{lh}", f"127.0.0.1:{lg}"
                        routes.extend(member_routes)
                    spec_out = WorkerSpec(
                        id=spec.name,
                        pool=pool.name,
                        arch=pool.arch,
                        index=i,
                        instances=pool.instances,
                        rtt_ms=rtt,
                        models=tuple(spec.model_names),
                        http_url=http_url,
                        grpc_url=grpc_url,
                        metrics_url=server.metrics_url,
                        direct_http_url=server.http_url,
                        direct_grpc_url=server.grpc_url,
                    )
                    self._members[spec.name] = _Member(spec_out, server, member_routes)
                if not routes:
                    break
                self._proxy = DelayProxy(routes, self.workdir / "netem.log")
                try:
                    self._proxy.start()
                    break
                except RuntimeError as exc:
                    self._proxy = None
                    if attempt + 1 == _RELAY_TRIES or "already in use" not in str(exc):
                        raise
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        self._say(f"fleet ready in {self.started_s:.1f} s")
        self.reset_clock()
        return self.workers

    def _warm_up(self) -> None:
        """One more request per model instance of every server, through its public URL.

        ``start_servers`` has warmed every stub directly; this pass goes through the delay
        relay where there is one (its connections and its event loop) and runs after every
        server is up, so the first requests of a user (a benchmark's first policy) do not pay
        a stub's or the relay's first-use cost (2-60 ms, measured).
        """
        threads = []
        for m in self._members.values():
            port = m.routes[0].listen_port if m.routes else None
            th = threading.Thread(target=m.server.warm_up, args=(1, port), daemon=True)
            th.start()
            threads.append(th)
        for th in threads:
            th.join(timeout=self._timeout)

    def reset_clock(self, origin_epoch: float | None = None) -> None:
        """Restart the fleet clock (speed schedules and faults) at ``origin_epoch`` (now)."""
        now_epoch, now_mono = time.time(), time.monotonic()
        origin = now_epoch if origin_epoch is None else origin_epoch
        self.origin_epoch = origin
        for m in self._members.values():
            m.server.set_control(origin_epoch=origin, slowdown=1.0)
        if self._injector is not None:
            self._injector.stop()
            self._injector = None
        if self._inject and self.scenario.faults:
            self._injector = FaultInjector(self, self.faults())
            self._injector.start(now_mono - (now_epoch - origin))

    def faults(self) -> list[Fault]:
        """The scenario's faults, one per affected server."""
        out = []
        for f in self.scenario.faults:
            pool = self.scenario.pool(f.pool)
            idx = range(pool.workers) if f.worker is None else [f.worker]
            for i in idx:
                out.append(
                    Fault(
                        at_s=float(f.at_s),
                        server=f"{pool.name}-{i}",
                        kind=f.kind,
                        for_s=None if f.for_s is None else float(f.for_s),
                        factor=float(f.factor or 1.0),
                    )
                )
        return out

    def stop(self) -> None:
        """Stop the fault schedule, the relay and every server; remove the temp dir we made."""
        if self._injector is not None:
            self._injector.stop()
            self._injector = None
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        stop_servers([m.server for m in self._members.values()], timeout=10)
        # Servers of a failed start that never became members are stopped by start_servers.
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Fleet:
        if not self._members:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inspection and manual faults ------------------------------------------------------
    @property
    def workers(self) -> list[WorkerSpec]:
        """The running workers, in scenario order."""
        return [m.spec for m in self._members.values()]

    @property
    def injector(self) -> FaultInjector | None:
        """The fault injector, when the scenario has faults and injection is on."""
        return self._injector

    def server(self, worker_id: str) -> TritonServer:
        """The Triton server of a worker."""
        return self._members[worker_id].server

    def crash(self, worker_id: str) -> None:
        """SIGKILL a worker's server now."""
        self.server(worker_id).kill()

    def recover(self, worker_id: str, timeout: float = 60.0) -> None:
        """Restart a crashed worker on its ports and wait until it is ready."""
        self.server(worker_id).restart(timeout)

    def set_slowdown(self, worker_id: str, factor: float) -> None:
        """Multiply a worker's service times by ``factor`` from now on (1.0 to clear)."""
        self.server(worker_id).set_control(slowdown=factor)

    def set_failing(self, worker_id: str, message: str) -> None:
        """Make every execution on a worker fail with ``message`` (a backend error); ``""`` ends it.

        Triton answers such a failure with HTTP 500 / gRPC ``INTERNAL``, as for a model whose
        backend broke: the worker's fault, unlike a malformed request.
        """
        self.server(worker_id).set_control(fail=message)

    def backlog(self) -> dict[str, int]:
        """Worker id -> requests its server holds now, queued or executing (-1: not answering).

        See :meth:`workers.launcher.TritonServer.backlog`; :func:`workers.idle.wait_idle` waits
        for all of them to be 0.
        """
        return {wid: m.server.backlog() for wid, m in self._members.items()}

    def pids(self) -> list[int]:
        """PIDs of every process this fleet runs now (servers, their stubs, the relay)."""
        out: list[int] = []
        for m in self._members.values():
            if m.server.pid is not None:
                out.extend(p.pid for p in reaper.descendants(m.server.pid))
        if self._proxy is not None and self._proxy.pid is not None:
            out.append(self._proxy.pid)
        return out


def _table(workers: Sequence[WorkerSpec]) -> Iterator[str]:
    cols = ["id", "arch", "inst", "rtt_ms", "models", "http", "grpc", "metrics"]
    rows = [
        [
            w.id,
            w.arch,
            str(w.instances),
            f"{w.rtt_ms:g}",
            ",".join(w.models),
            w.http_url,
            w.grpc_url,
            w.metrics_url,
        ]
        for w in workers
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    yield "  ".join(c.ljust(widths[i]) for i, c in enumerate(cols))
    for r in rows:
        yield "  ".join(v.ljust(widths[i]) for i, v in enumerate(r))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a background job of a non-interactive shell starts with SIGINT ignored.
    previous = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def run_workers(scenario: Path, time_scale: float | None) -> int:
    """``synergai workers``: run a scenario's fleet until Ctrl-C or SIGTERM.

    Prints the worker table and the gateway config path on stdout, progress on stderr.

    Returns:
        Exit status: 0 after a clean stop, 1 if the fleet could not start.
    """
    from gateway.discovery.registry import start_registration
    from workers.launcher import TritonStartError

    with _sigterm_as_interrupt():
        fleet = Fleet(scenario, time_scale=time_scale, progress=True)
        try:
            try:
                workers = fleet.start()
            except TritonStartError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            config = write_gateway_config(workers, fleet.workdir / "gateway-workers.yaml")
            registrar = start_registration([w.as_config() for w in workers], os.environ)
            for line in _table(workers):
                print(line)
            print(f"\ngateway config: {config}", flush=True)
            if registrar is not None:
                print("registered in the Redis worker registry (heartbeat)", file=sys.stderr)
            print("serving; Ctrl-C or SIGTERM stops every server", file=sys.stderr, flush=True)
            idle = threading.Event()
            while not idle.wait(3600.0):
                pass
        except KeyboardInterrupt:
            print("stopping ...", file=sys.stderr, flush=True)
        finally:
            fleet.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover - manual use
    sys.exit(run_workers(Path(sys.argv[1]), None if len(sys.argv) < 3 else float(sys.argv[2])))
