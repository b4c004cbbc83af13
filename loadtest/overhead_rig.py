"""What the overhead benchmarks run against: one Triton echo server, Valkey, nginx.

* :func:`echo_rig`: one real Triton server with :data:`MODEL` (``echo``, answers at once:
  0.01 ms, two instances, so the server is never the slowest part), an embedded Valkey and the
  gateway config (:func:`write_overhead_config`) for a :class:`~loadtest.gateway_process.
  GatewayProcess` in front of it;
* :class:`Nginx`: ``nginx`` with ``least_conn`` to that server, the classic load balancer to
  compare with (when the binary is installed: :func:`nginx_binary`).

Used by ``synergai bench overhead`` (:mod:`loadtest.overhead`), ``python -m
loadtest.grpc_overhead`` and ``python loadtest/latency_overhead.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.embedded import EmbeddedValkey
from loadtest.bench_stack import write_worker_config
from loadtest.gateway_process import StackError
from workers.launcher import http_get

__all__ = ["MODEL", "Nginx", "echo_rig", "nginx_binary", "write_overhead_config"]

MODEL = "echo"
"""The emulated model every overhead row calls."""
MODEL_MS = 0.01
"""Its service time, ms."""
_ARCH = "overhead-cpu"


def nginx_binary() -> str | None:
    """Path of the ``nginx`` binary, or None when not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


class Nginx:
    """``nginx`` in the foreground with a generated config: ``least_conn`` to one upstream.

    One worker process (as the gateway is one process), access log off, HTTP/1.1 keep-alive
    to the upstream (``keepalive 256``), temp paths in its own directory.
    """

    def __init__(self, binary: str, upstream_port: int, workdir: Path) -> None:
        from workers.launcher import free_ports

        self.binary = binary
        self.port = free_ports(1)[0]
        self.dir = workdir / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.conf = self.dir / "nginx.conf"
        d = self.dir
        self.conf.write_text(
            f"""worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream triton {{
    least_conn;
    server 127.0.0.1:{upstream_port};
    keepalive 256;
  }}
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://triton;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""",
            encoding="utf-8",
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port answers."""
        from workers import reaper

        self._proc = subprocess.Popen(
            [self.binary, "-p", str(self.dir), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "ab"),  # noqa: SIM115 - child owns it
            start_new_session=True,
            preexec_fn=reaper.preexec_for_child(),
        )
        reaper.register(self._proc.pid, "nginx")
        deadline = time.monotonic() + timeout
        while http_get(self.port, "/v2/health/ready")[0] != 200:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = (self.dir / "stderr.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise StackError(f"nginx did not start: {err}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGQUIT (graceful), then SIGKILL the group; reap."""
        from workers import reaper

        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        reaper.kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        reaper.unregister(proc.pid)
        self._proc = None


def write_overhead_config(wd: Path, server: Any) -> Path:
    """Write the profile and gateway config for one emulated ``server`` under ``wd``; its path.

    ``server`` is a started :class:`workers.launcher.TritonServer` serving :data:`MODEL`.
    """
    prof_dir = wd / "profiles" / _ARCH
    prof_dir.mkdir(parents=True)
    (prof_dir / f"{MODEL}.yaml").write_text(
        f"arch: {_ARCH}\nmodel: {MODEL}\nengine: emulated\nsource: overhead benchmark\n"
        "max_batch: 8\nlatency_ms:\n  1: {p50: 0.2, p99: 0.6}\n  8: {p50: 0.3, p99: 0.8}\n",
        encoding="utf-8",
    )
    cfg = wd / "gateway.yaml"
    write_worker_config(
        cfg,
        [
            {
                "id": "overhead-0",
                "pool": "overhead",
                "arch": _ARCH,
                "url": server.http_url,
                "grpc_url": server.grpc_url,
                "metrics_url": server.metrics_url,
                "instances": 2,
                "rtt_ms": 0.0,
                "models": [MODEL],
            }
        ],
        {MODEL: {"slo_ms": 1000.0}},
    )
    doc_cfg = cfg.read_text(encoding="utf-8") + f"profiles: {wd / 'profiles'}\n"
    cfg.write_text(doc_cfg, encoding="utf-8")
    return cfg


@contextlib.contextmanager
def echo_rig(wd: Path) -> Iterator[tuple[Any, EmbeddedValkey, Path]]:
    """The overhead benchmarks' rig: Triton with :data:`MODEL`, a Valkey, a gateway config.

    One real Triton server (``echo``, 0.01 ms, two instances, warmed up), an embedded Valkey
    and the config of :func:`write_overhead_config`; yields ``(server, valkey, config)`` and
    stops both servers on the way out. Gateways are the caller's (:class:`GatewayProcess`).
    """
    from workers.launcher import TritonServer
    from workers.repository import EmulatedModel, ServerSpec

    spec = ServerSpec(name="overhead-0", models=[EmulatedModel.fixed(MODEL, MODEL_MS)], instances=2)
    server = TritonServer(spec, wd)
    valkey = EmbeddedValkey()
    try:
        server.start()
        server.wait_ready(60)
        with contextlib.suppress(Exception):
            server.warm_up(2)
        valkey.start()
        yield server, valkey, write_overhead_config(wd, server)
    finally:
        valkey.stop()
        server.stop()
