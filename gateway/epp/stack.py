"""Envoy + our endpoint picker in front of a set of workers, on loopback (tests, bench, demo).

:class:`EnvoyStack` writes the gateway config the picker reads (the same file ``synergai
serve`` would read), starts ``synergai epp`` as a child (:class:`EppProcess`) and a real Envoy
whose bootstrap points its ext_proc filter at it (:class:`EnvoyProcess`), and stops both.
``picker=False`` gives Envoy alone, balancing with ``least_request`` (the ``envoy`` row of
``synergai bench overhead``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from gateway.core.net import free_port
from gateway.epp.envoy_config import EnvoyLayout, LbMode
from gateway.epp.envoy_process import EnvoyProcess
from gateway.epp.process import EppProcess

__all__ = ["EnvoyStack"]


class EnvoyStack:
    """Envoy (and, with ``picker``, ``synergai epp``) for ``workers``; a context manager.

    Args:
        workers: the workers' config entries (``WorkerSpec.as_config()`` dicts).
        workdir: where the config, bootstrap and logs go.
        profiles: the profiles directory the picker predicts from.
        picker: run the endpoint picker (else Envoy balances alone).
        fail_open: GIE ``FailOpen`` (Envoy forwards on its own when the picker is down).
        lb: ``override_host`` or ``original_dst`` (see :mod:`gateway.epp.envoy_config`).
        settings: more gateway settings for the picker (``policy``, ``models``, ...).
        redis_url: shared state (None: the picker starts its own embedded Valkey).
        concurrency: Envoy worker threads.
    """

    def __init__(
        self,
        workers: Sequence[Mapping[str, Any]],
        workdir: Path,
        profiles: Path | None = None,
        *,
        picker: bool = True,
        fail_open: bool = True,
        lb: LbMode = "override_host",
        settings: Mapping[str, Any] | None = None,
        redis_url: str | None = None,
        concurrency: int = 1,
    ) -> None:
        self.workers = [dict(w) for w in workers]
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "gateway.yaml"
        doc: dict[str, Any] = {"workers": self.workers, "log_level": "warning"}
        if profiles is not None:
            doc["profiles"] = str(profiles)
        doc.update(settings or {})
        doc.setdefault("epp", {})
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        env = {"REDIS_URL": redis_url} if redis_url else {}
        self.epp = (
            EppProcess(
                self.config_path,
                free_port(),
                workdir / "epp.log",
                metrics_port=free_port(),
                env=env,
            )
            if picker
            else None
        )
        layout = EnvoyLayout(
            listen_port=free_port(),
            admin_port=free_port(),
            http_endpoints=[w["url"] for w in self.workers],
            grpc_endpoints=[w["grpc_url"] for w in self.workers if w.get("grpc_url")],
            epp=self.epp.address if self.epp is not None else None,
            fail_open=fail_open,
            lb=lb,
        )
        self.envoy = EnvoyProcess(layout, workdir, concurrency=concurrency)

    @property
    def address(self) -> str:
        """Envoy's ``host:port`` (``tritonclient.http`` and ``.grpc`` alike)."""
        return self.envoy.address

    @property
    def url(self) -> str:
        """Envoy's base URL."""
        return self.envoy.url

    @property
    def grpc_target(self) -> str:
        """Envoy's ``host:port`` for gRPC clients (the same listener as REST)."""
        return self.envoy.address

    def metrics(self) -> str:
        """The picker's Prometheus text (what a gateway replica's ``/metrics`` shows)."""
        return self.epp.metrics() if self.epp is not None else ""

    def terminate(self) -> None:
        """Begin stopping (the live bench stops its front doors in two passes)."""

    def pids(self) -> list[int]:
        """PIDs of the running children (for reaping checks)."""
        procs = [self.envoy.pid, self.epp.pid if self.epp is not None else None]
        return [p for p in procs if p is not None]

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the picker (and wait until ready), then Envoy (and wait until ready)."""
        try:
            if self.epp is not None:
                self.epp.start()
                self.epp.wait_ready(timeout_s)
            self.envoy.start()
            self.envoy.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop Envoy, then the picker (idempotent)."""
        self.envoy.stop()
        if self.epp is not None:
            self.epp.stop()

    def __enter__(self) -> EnvoyStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
