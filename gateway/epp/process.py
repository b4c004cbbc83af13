"""``synergai epp`` as a child process: start, wait for readiness, kill, restart, reap.

For integration tests, benchmarks and the demo. Readiness is the gRPC health service's
``readiness`` (what a Kubernetes ``grpc`` probe asks). The child runs in its own process
group, registered with :mod:`workers.reaper`; its output goes to ``log_path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from workers import reaper

__all__ = ["EppProcess", "check_health"]


def check_health(address: str, service: str = "readiness", timeout_s: float = 1.0) -> str:
    """The gRPC health status name of ``service`` at ``address`` (``UNREACHABLE`` if down)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


class EppProcess:
    """One ``python -m gateway.cli epp`` child.

    Args:
        config: the gateway config file (workers, models, ``epp:``).
        port: ext_proc / health port.
        log_path: where its stdout and stderr go.
        metrics_port: Prometheus port (0: off).
        env: extra environment (``REDIS_URL``...); ``SYNERGAI_*`` of this process are dropped.
    """

    def __init__(
        self,
        config: Path,
        port: int,
        log_path: Path,
        *,
        metrics_port: int = 0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.port = port
        self.metrics_port = metrics_port
        self.log_path = log_path
        self.env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawn the picker (see :meth:`wait_ready`)."""
        if self.running:
            raise RuntimeError(f"endpoint picker already running (pid {self.pid})")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNERGAI_")}
        env.update(self.env)
        cmd = [sys.executable, "-m", "gateway.cli", "epp", "--config", str(self.config),
               "--port", str(self.port), "--metrics-port", str(self.metrics_port)]  # fmt: skip
        self._close_log()
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
        reaper.register(self._proc.pid, "synergai epp")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll gRPC health ``readiness`` until SERVING.

        Raises:
            RuntimeError: the child exited or was not ready in time (its log tail included).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"synergai epp exited:\n{self.log_tail()}")
            if check_health(self.address, timeout_s=0.5) == "SERVING":
                return
            time.sleep(0.1)
        raise RuntimeError(f"synergai epp not ready after {timeout_s:g} s:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the picker's process group and reap it (the fail-open test's kill -9)."""
        proc = self._proc
        if proc is None:
            return
        reaper.kill_group(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            reaper.kill_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
        reaper.unregister(proc.pid)
        self._proc = None

    def stop(self) -> None:
        """SIGTERM (graceful drain), SIGKILL if it lingers; idempotent."""
        self.kill(signal.SIGTERM)
        self._close_log()

    def metrics(self) -> str:
        """The picker's Prometheus text ("" when it serves none or is unreachable)."""
        if not self.metrics_port:
            return ""
        from workers.launcher import http_get

        status, body = http_get(self.metrics_port, "/metrics", timeout=2.0)
        return body.decode("utf-8", "replace") if status == 200 else ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the picker's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EppProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
