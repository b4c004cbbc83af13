"""The one way benchmarks and tests run a gateway as a process: :class:`GatewayProcess`.

A ``synergai serve`` replica (or, with ``store="memory"``, the same app on the in-process store)
in its own process group, so it never shares the load generator's GIL or event loop: free
loopback ports, its policy and Redis URL in the environment (``SYNERGAI_POLICY``,
``REDIS_URL``), its output in a log file, readiness polled on ``/v2/health/ready``; stopped with
SIGTERM (it drains), then SIGKILL to its group, always reaped. Every process is registered with
:mod:`workers.reaper`, so nothing outlives the benchmark or test even when it is interrupted.

``python -m loadtest.gateway_process serve-memory --config F --port P`` is the in-process-store
gateway it runs for ``store="memory"``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import psutil

from workers import reaper
from workers.launcher import free_ports, http_get, tail_lines

__all__ = ["GatewayProcess", "StackError", "Store", "main", "serve_memory"]


_MEMORY_ENTRY = "loadtest.gateway_process"
"""The module whose ``serve-memory`` command runs a gateway on the in-process store."""


class StackError(RuntimeError):
    """A process of the benchmark stack did not start; the message ends with its log tail."""


_PORT_RETRIES = 3
"""Restarts on new ports after a start-up lost to "address already in use"."""

Store = Literal["redis", "memory"]
"""How a :class:`GatewayProcess` keeps shared state: Redis (``synergai serve``) or in-process."""


class GatewayProcess:
    """One gateway replica as a child process on free loopback ports (REST and gRPC).

    ``store="redis"`` runs ``python -m gateway.cli serve --config F``; ``store="memory"`` runs
    the same app with :class:`~gateway.state.memory_store.MemoryStore` injected (``python -m
    loadtest.gateway_process serve-memory``), for comparisons against the shared state. The
    environment is this process's without any ``SYNERGAI_*`` or ``REDIS_URL`` (a benchmark
    configures its gateway, not the caller's shell), plus what the arguments set.

    Args:
        config: gateway config file (workers, model defaults).
        workdir: where its log goes (``gateway-<name>.log``).
        policy: routing policy (``SYNERGAI_POLICY``); ``None`` keeps the config's.
        redis_url: shared Redis (``REDIS_URL``); ``None`` lets the gateway embed its own.
        name: label for logs and errors.
        env: extra environment variables (``SYNERGAI_UPSTREAM``, ``SYNERGAI_LEASE_TTL_S``...).
        seed: the policy's RNG seed (``SYNERGAI_SEED``); the simulator seeds its policy RNG
            with the scenario's seed, so ``random`` and ``p2c`` draw the same numbers live.
        store: ``redis`` or ``memory`` (see above).
        port: REST port (default: a free one).
    """

    def __init__(
        self,
        config: Path,
        workdir: Path,
        *,
        policy: str | None = None,
        redis_url: str | None = None,
        name: str = "0",
        env: Mapping[str, str] | None = None,
        seed: int | None = None,
        store: Store = "redis",
        port: int | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.policy = policy
        self.redis_url = redis_url
        self.name = name
        self.store = store
        self.port, self.grpc_port = free_ports(2)
        self._fixed_port = port is not None
        if port is not None:
            self.port = port
        self._port_retries = 0
        self.log_path = workdir / f"gateway-{name}.log"
        self._env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
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
        return self.proc.pid if self.proc is not None else None

    def process(self) -> psutil.Process:
        """The running gateway as a ``psutil.Process`` (for CPU accounting)."""
        if self.proc is None:
            raise RuntimeError(f"gateway {self.name} is not running")
        return psutil.Process(self.proc.pid)

    def command(self) -> list[str]:
        """The command line it runs."""
        entry = (
            ["gateway.cli", "serve"] if self.store == "redis" else [_MEMORY_ENTRY, "serve-memory"]
        )
        cmd = [sys.executable, "-m", *entry, "--config", str(self.config)]
        return [*cmd, "--port", str(self.port), "--grpc-port", str(self.grpc_port)]

    def environment(self) -> dict[str, str]:
        """The environment it runs with (see the class docstring)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SYNERGAI_") and k != "REDIS_URL"
        }
        env |= {"SYNERGAI_LOG_LEVEL": "warning", "SYNERGAI_HOST": "127.0.0.1"}
        env["PYTHONUNBUFFERED"] = "1"
        if self.policy is not None:
            env["SYNERGAI_POLICY"] = self.policy
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.seed is not None:
            env["SYNERGAI_SEED"] = str(self.seed)
        return env | self._env

    def start(self) -> None:
        """Spawn the replica (non-blocking); see :meth:`wait_ready`."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,
            preexec_fn=reaper.preexec_for_child(),
        )
        reaper.register(self.proc.pid, f"gateway {self.name}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``/v2/health/ready`` until 200.

        Raises:
            StackError: the process died or stayed unready (it is stopped); with its log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                self.stop()
                if self._lost_its_port():
                    continue
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

    def _lost_its_port(self) -> bool:
        """After an exit at start-up: restart on new ports if another process took one.

        A free port can be taken between :func:`free_ports` and the bind (another test's
        server); Triton's launcher retries the same way. At most ``_PORT_RETRIES`` times, and
        never when the caller fixed the REST port.
        """
        tail = tail_lines(self.log_path, 30).lower()
        in_use = "address already in use" in tail or "cannot bind" in tail
        if not in_use or self._fixed_port or self._port_retries >= _PORT_RETRIES:
            return False
        self._port_retries += 1
        self.port, self.grpc_port = free_ports(2)
        self.start()
        return True

    def metrics(self) -> str:
        """The gateway's ``/metrics`` text ("" when unreachable)."""
        status, body = http_get(self.port, "/metrics", timeout=2.0)
        return body.decode("utf-8", "replace") if status == 200 else ""

    def log(self) -> str:
        """Everything it has written so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def terminate(self) -> None:
        """Send SIGTERM (it drains, then exits; see :meth:`stop`)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for it to exit by itself (after :meth:`terminate`); its exit code.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout`` s.
            RuntimeError: it was never started.
        """
        if self.proc is None:
            raise RuntimeError(f"gateway {self.name} is not running")
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """``kill -9`` its group: no drain, no release; reaped."""
        self._end(graceful=False, timeout=0.0)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s (it drains), then SIGKILL the group; reap.

        Returns:
            Its exit code after SIGTERM (0: a clean stop), or None when it had to be killed
            or was not running (idempotent).
        """
        return self._end(graceful=True, timeout=timeout)

    def _end(self, *, graceful: bool, timeout: float) -> int | None:
        proc, code = self.proc, None
        if proc is not None:
            if graceful and proc.poll() is None:
                self.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=timeout)
            code = proc.poll() if graceful else None
            reaper.kill_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            reaper.unregister(proc.pid)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

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


def serve_memory(config: Path, port: int, grpc_port: int | None) -> int:
    """``synergai serve`` on the in-process store (:class:`GatewayProcess` ``store="memory"``).

    The same ``create_app`` with :class:`~gateway.state.memory_store.MemoryStore` injected, on
    uvicorn (uvloop); SIGTERM drains and exits 0.
    """
    import asyncio

    import uvloop

    from gateway.app import AppDeps, create_app
    from gateway.core.clock import MonotonicClock
    from gateway.server import InProcessServer, inprocess_config
    from gateway.settings import load_settings
    from gateway.state.memory_store import MemoryStore

    settings = load_settings(config, port=port, grpc_port=grpc_port)
    clock = MonotonicClock()
    app = create_app(settings, AppDeps(clock=clock, store=MemoryStore(clock)))
    server = InProcessServer(inprocess_config(app, "127.0.0.1", port))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
        await server.serve()

    uvloop.run(main())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loadtest.gateway_process serve-memory --config F --port P [--grpc-port G]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m loadtest.gateway_process")
    sub = ap.add_subparsers(dest="cmd", required=True)
    mem = sub.add_parser("serve-memory", help="the gateway on the in-process store")
    mem.add_argument("--config", type=Path, required=True)
    mem.add_argument("--port", type=int, required=True)
    mem.add_argument("--grpc-port", type=int, default=None)
    args = ap.parse_args(argv)
    return serve_memory(args.config, args.port, args.grpc_port)


if __name__ == "__main__":
    raise SystemExit(main())
