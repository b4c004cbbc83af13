"""Start, watch and stop native ``tritonserver`` processes (DESIGN.md §9).

A :class:`TritonServer` is one emulated device: a real Triton server from the ``nvidia-pytriton``
wheel, on free loopback ports (HTTP, gRPC, metrics), serving a generated model repository (see
:mod:`workers.repository`). Both protocols work for every model (no decoupled models), so the
gateway may forward over either.

Life cycle: ``start()`` spawns the process in its own process group with its log in the server's
work directory (never on the terminal); ``wait_ready()`` polls ``/v2/health/ready`` and every
model's ready endpoint and, on failure or timeout, raises :class:`TritonStartError` with the tail
of the log; ``stop()`` sends SIGTERM to the server (Triton unloads models and stops its stubs),
then SIGKILL to the whole group after a timeout; ``kill()`` is the hard crash used by fault
injection. :func:`start_servers` starts many in parallel. :mod:`workers.reaper` is the safety
net for everything we started.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil

from workers import reaper
from workers.repository import (
    DEVICE_MODEL,
    SLOT_RESOURCE,
    ServerSpec,
    busy_slots,
    reset_slots,
    slots_file,
    write_repository,
)
from workers.triton_env import TritonInstall, find_triton

__all__ = [
    "PROTOCOLS",
    "Ports",
    "TritonServer",
    "TritonStartError",
    "free_ports",
    "http_get",
    "start_servers",
    "stop_servers",
    "tail_lines",
]

PROTOCOLS: tuple[str, ...] = ("http", "grpc")
"""Protocols every emulated model answers unary inference on."""

_LOG_TAIL_LINES = 40
_PORT_RETRIES = 3


class TritonStartError(RuntimeError):
    """A Triton server did not become ready; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one server."""

    http: int
    grpc: int
    metrics: int


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago.

    Drawn by :func:`gateway.core.net.free_port`: below the kernel's ephemeral range (where no
    outgoing connection takes them) and never handed out twice by this process while recent,
    so two servers set up one after the other (two gateway replicas, a Triton fleet) never
    get the same port. Another process may still take one before its server binds it, which
    :meth:`TritonServer.wait_ready` and ``GatewayProcess.wait_ready`` handle by retrying on
    new ports.
    """
    from gateway.core.net import free_port

    return [free_port() for _ in range(count)]


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """``GET http://127.0.0.1:port/path``; ``(0, b"")`` when no HTTP server answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        # HTTPException: something other than an HTTP/1 server answered (a port taken by
        # another process's gRPC listener, say), which is "not this server" too.
        return 0, b""
    finally:
        conn.close()


def tail_lines(path: Path, lines: int) -> str:
    """The last ``lines`` lines of the text file ``path`` (a log), or ``"(no log)"``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class TritonServer:
    """One real Triton server emulating one device.

    Args:
        spec: what it serves.
        workdir: parent directory; the server uses ``workdir/<spec.name>/`` for its model
            repository, control file and ``server.log``.
        ports: fixed ports, or None to pick free ones (and re-pick if taken at start-up).
        install: the Triton installation (default: :func:`find_triton`).
        origin_epoch: initial clock origin (``time.time()``) of the speed schedule; None until
            :meth:`set_control` sets it.
    """

    def __init__(
        self,
        spec: ServerSpec,
        workdir: Path,
        *,
        ports: Ports | None = None,
        install: TritonInstall | None = None,
        origin_epoch: float | None = None,
    ) -> None:
        self.spec = spec
        self.dir = workdir / spec.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.repo = self.dir / "repo"
        self.control_file = self.dir / "control.json"
        self.log_path = self.dir / "server.log"
        self._install = install or find_triton()
        self._fixed_ports = ports is not None
        self.ports = ports or Ports(*free_ports(3))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._slowdown = 1.0
        self._fail = ""
        self._origin = origin_epoch
        self._attempts = 0
        write_repository(spec, self.repo, self.control_file)
        self.set_control()

    # -- addresses -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The server's name (``spec.name``)."""
        return self.spec.name

    @property
    def http_url(self) -> str:
        """KServe v2 REST base URL."""
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        """The gRPC target (``host:port``, as tritonclient.grpc takes it)."""
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics URL."""
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def backlog(self) -> int:
        """Requests the server holds now: queued (Triton's pending count, summed over its models)
        plus executing (the emulated device's busy slots); -1 when its metrics do not answer.
        """
        from gateway.state.triton_metrics import parse_metrics

        status, body = http_get(self.ports.metrics, "/metrics", timeout=1.0)
        if status != 200:
            return -1
        pending = parse_metrics(body.decode("utf-8", "replace"), 0.0).pending
        return int(pending) + busy_slots(slots_file(self.control_file))

    # -- control file ----------------------------------------------------------------------
    def set_control(
        self,
        *,
        slowdown: float | None = None,
        origin_epoch: float | None = None,
        fail: str | None = None,
    ) -> None:
        """Atomically rewrite the control file the model reads on every request.

        Args:
            slowdown: fault slowdown factor (1.0 = none); None keeps the current one.
            origin_epoch: ``time.time()`` at which the speed schedule's t=0 is; None keeps it.
            fail: a message: every execution fails with it (a backend error, Triton's 500 /
                ``INTERNAL``); ``""`` ends that; None keeps the current one.
        """
        if slowdown is not None:
            self._slowdown = slowdown
        if origin_epoch is not None:
            self._origin = origin_epoch
        if fail is not None:
            self._fail = fail
        doc: dict[str, object] = {"slowdown": self._slowdown, "origin_epoch": self._origin}
        if self._fail:
            doc["fail"] = self._fail
        tmp = self.control_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.control_file)

    # -- life cycle ------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The ``tritonserver`` command line (DESIGN.md §9 flags plus the slot rate limiter)."""
        inst = self._install
        cmd = [
            str(inst.binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={inst.backends}",
            "--model-control-mode=explicit",
            f"--load-model={DEVICE_MODEL}",
            *(f"--load-model={m}" for m in self.spec.model_names),
            "--http-address=127.0.0.1",
            f"--http-port={self.ports.http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.ports.grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.ports.metrics}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            "--pinned-memory-pool-byte-size=0",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            "--exit-timeout-secs=5",
            "--rate-limit=execution_count",
            f"--rate-limit-resource={SLOT_RESOURCE}:{self.spec.instances}",
        ]
        return cmd

    def start(self) -> None:
        """Spawn the server (non-blocking); see :meth:`wait_ready`."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self._log.write(f"\n===== start {time.strftime('%H:%M:%S')} {self.ports}\n".encode())
        self._log.flush()
        self._attempts += 1
        reset_slots(slots_file(self.control_file), self.spec.instances)
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._install.env(),
            cwd=self.dir,
            start_new_session=True,
            preexec_fn=reaper.preexec_for_child(),
        )
        reaper.register(self._proc.pid, f"tritonserver {self.name}")

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server log."""
        return tail_lines(self.log_path, lines)

    def is_ready(self) -> bool:
        """One non-blocking readiness check: server ready and every model ready."""
        if not self.running or http_get(self.ports.http, "/v2/health/ready")[0] != 200:
            return False
        return all(
            http_get(self.ports.http, f"/v2/models/{m}/ready")[0] == 200
            for m in self.spec.model_names
        )

    def _check_alive(self) -> None:
        """Raise (or re-spawn on new ports) if the process has exited during start-up."""
        if self._proc is None:
            raise TritonStartError(f"{self.name} was never started")
        code = self._proc.poll()
        if code is None:
            return
        tail = self.log_tail()
        self._reap()
        in_use = "address already in use" in tail.lower() or "failed to bind" in tail.lower()
        if in_use and self._attempts < _PORT_RETRIES:
            if not self._fixed_ports:
                self.ports = Ports(*free_ports(3))
            else:
                time.sleep(0.5)
            self.start()
            return
        raise TritonStartError(
            f"tritonserver {self.name} exited with code {code} during start-up; "
            f"log {self.log_path}, last lines:\n{tail}"
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until ready.

        Raises:
            TritonStartError: the process exited or ``timeout`` passed; the server is stopped
                and the message carries the tail of its log.
        """
        wait_all_ready([self], timeout)

    def warm_up(self, rounds: int = 2, port: int | None = None) -> None:
        """Send ``rounds`` tiny requests per model instance, ``instances`` at a time.

        The first execution on each python-backend instance is slower than the next ones
        (2-60 ms more, measured on this recipe); warming up keeps that out of every
        measurement. Errors are ignored: readiness has already been checked.

        Args:
            rounds: requests per model instance.
            port: HTTP port to send them to (default: the server's own; the fleet passes its
                delay relay's, so that path is warm too).
        """
        body = json.dumps(
            {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}]}
        ).encode()

        def one(model: str) -> None:
            for _ in range(rounds):
                conn = http.client.HTTPConnection("127.0.0.1", port or self.ports.http, timeout=30)
                try:
                    conn.request("POST", f"/v2/models/{model}/infer", body=body)
                    conn.getresponse().read()
                except OSError:
                    pass
                finally:
                    conn.close()

        threads = [
            threading.Thread(target=one, args=(m,), daemon=True)
            for m in self.spec.model_names
            for _ in range(self.spec.instances)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _reap(self) -> None:
        if self._proc is not None:
            reaper.kill_group(self._proc.pid)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            reaper.unregister(self._proc.pid)
        self._close_log()

    def kill(self) -> None:
        """Crash the server now: SIGKILL to its process group (server and stubs).

        Its shared-memory segments are removed afterwards, as Triton cannot do it itself.
        """
        if self._proc is None:
            return
        procs = reaper.descendants(self._proc.pid)
        shm = reaper.shm_segments(procs)
        reaper.kill_group(self._proc.pid)
        reaper.wait_gone(procs, timeout=5)
        self._reap()
        reaper.remove_shm(shm)
        self._proc = None

    def send_stop(self) -> None:
        """Ask the server to stop (SIGTERM to the server only; it stops its own stubs)."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully: SIGTERM, then SIGKILL to the group after ``timeout`` seconds."""
        stop_servers([self], timeout)

    def restart(self, timeout: float = 60.0) -> None:
        """Start again on the same ports (after a crash) and wait until ready."""
        if self.running:
            self.kill()
        self._fixed_ports = True
        self._attempts = 0
        self.start()
        self.wait_ready(timeout)
        self.warm_up()

    def __enter__(self) -> TritonServer:
        if not self.running:
            self.start()
            self.wait_ready()
            self.warm_up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_all_ready(servers: Sequence[TritonServer], timeout: float = 60.0) -> None:
    """Poll servers until all are ready; on any failure stop all of them and raise.

    Raises:
        TritonStartError: with the failing server's name and log tail.
    """
    pending = list(servers)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            for server in list(pending):
                server._check_alive()
                if server.is_ready():
                    pending.remove(server)
            if not pending:
                return
            if time.monotonic() > deadline:
                first = pending[0]
                raise TritonStartError(
                    f"tritonserver {first.name} not ready after {timeout:.0f} s "
                    f"({len(pending)} of {len(servers)} pending); log {first.log_path}, "
                    f"last lines:\n{first.log_tail()}"
                )
            time.sleep(0.05)
    except BaseException:
        stop_servers(servers, timeout=2.0)
        raise


def start_servers(
    specs: Iterable[ServerSpec],
    workdir: Path,
    *,
    timeout: float = 60.0,
    origin_epoch: float | None = None,
    warm_up: bool = True,
) -> list[TritonServer]:
    """Start servers in parallel, wait until all are ready, and warm them up.

    Processes are spawned one after another from the calling thread (cheap, and it keeps the
    parent-death signal valid), then polled together.

    Raises:
        TritonStartError: if any fails; all of them are stopped first.
    """
    install = find_triton()
    servers = [TritonServer(s, workdir, install=install, origin_epoch=origin_epoch) for s in specs]
    try:
        for server in servers:
            server.start()
    except BaseException:
        stop_servers(servers, timeout=2.0)
        raise
    wait_all_ready(servers, timeout)
    if warm_up:
        threads = [threading.Thread(target=s.warm_up, daemon=True) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=timeout)
    return servers


def stop_servers(servers: Iterable[TritonServer], timeout: float = 10.0) -> None:
    """Stop servers in parallel: SIGTERM to all, wait, SIGKILL the groups of the laggards.

    Afterwards no process of any of their groups is alive and no shared-memory segment they
    mapped is left.
    """
    servers = list(servers)
    procs: dict[str, list[psutil.Process]] = {}
    shm: set[Path] = set()
    for server in servers:
        if server._proc is not None:
            procs[server.name] = reaper.descendants(server._proc.pid)
            shm |= reaper.shm_segments(procs[server.name])
            server.send_stop()
    deadline = time.monotonic() + timeout
    for server in servers:
        proc = server._proc
        if proc is None:
            continue
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        reaper.kill_group(proc.pid)
        reaper.wait_gone(procs.get(server.name, []), timeout=5)
        server._reap()
        server._proc = None
    reaper.remove_shm(shm)
