"""``synergai serve``: the production gateway process(es) on uvicorn (uvloop + httptools).

One process by default. ``--workers N`` starts N uvicorn worker processes sharing the listening
socket; they share one Redis (the embedded Valkey is started here, once, when ``REDIS_URL`` is
unset, and handed to them through ``REDIS_URL``), so they behave as one balancer (issue 7
refines this). SIGTERM / Ctrl-C: uvicorn stops accepting, finishes in-flight requests (up to
``drain_timeout``), then the app's lifespan releases Redis reservations and closes clients.

Every uvicorn config here sets ``proxy_headers=False`` (``ProxyHeadersMiddleware`` is one
more coroutine per request, rewriting the client address from ``X-Forwarded-For``, which
nothing here reads) and ``server_header=False`` (no ``server: uvicorn`` on every answer).
``Date`` stays: HTTP/1.1 asks origin servers for it, and uvicorn formats it once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from gateway.app import create_app
from gateway.observability.logging import configure_logging
from gateway.settings import FormatError, Settings, load_settings

__all__ = [
    "InProcessServer",
    "ServerThread",
    "app_from_env",
    "inprocess_config",
    "run_serve",
    "tune_gc",
]

DRAIN_TIMEOUT_S = 10
"""Seconds an embedded server waits for in-flight requests on stop (``synergai serve`` uses
the ``drain_timeout_s`` setting)."""


GC_THRESHOLD = (20_000, 20, 20)
"""``gc.set_threshold`` of a serving process (CPython's default is ``(700, 10, 10)``)."""


def tune_gc() -> None:
    """Move what start-up allocated out of the collector's sight and collect less often.

    Why: py-spy ``--native`` on the gateway under gRPC load at concurrency 32 showed 10% of
    its samples in ``gc_collect_main``: grpc.aio allocates a few hundred container objects per
    call, so the default gen-0 threshold of 700 ran a collection every couple of requests, and
    every tenth of those walked the long-lived heap (modules, profiles, the view). After
    ``gc.freeze()`` the start-up heap is never scanned again, and a gen-0 threshold of 20,000
    runs young collections ~30x less often; request garbage is almost all freed by reference
    counting, so memory does not grow (cycles still go at the next collection).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def app_from_env() -> object:
    """Uvicorn factory for worker processes: settings from ``SYNERGAI_*`` and ``REDIS_URL``."""
    settings = load_settings(None)
    configure_logging(settings.log_level)
    app = create_app(settings)
    tune_gc()
    return app


def _uvicorn_config(app: object, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        timeout_keep_alive=75,
        backlog=4096,
        proxy_headers=False,  # per-request costs for nothing: see the module doc
        server_header=False,
    )


def run_serve(config: Path | None, workers: int, port: int | None, grpc_port: int | None) -> int:
    """Run the gateway until SIGTERM/SIGINT; the exit code (0 on a clean stop, 2 bad config)."""
    try:
        settings = load_settings(config, port=port, grpc_port=grpc_port)
    except FormatError as exc:
        print(f"synergai serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if not settings.workers and not settings.discovery.dynamic:
        print(
            "synergai serve: no workers configured (add `workers:` to the config file)",
            file=sys.stderr,
        )
        return 2
    if settings.redis_url is None:
        from gateway.extras import MissingExtra, check

        try:
            check("REDIS_URL unset (an embedded Valkey)", "embedded")
        except MissingExtra as exc:
            print(f"synergai serve: {exc}; or set REDIS_URL", file=sys.stderr)
            return 2
    embedded = None
    if settings.redis_url is None and workers > 1:
        from gateway.embedded import EmbeddedValkey

        embedded = EmbeddedValkey()
        url = embedded.start()
        settings = settings.model_copy(update={"redis_url": url})
    try:
        if workers > 1:
            env = os.environ
            if config is not None:
                env["SYNERGAI_CONFIG"] = str(config.resolve())
            env["REDIS_URL"] = str(settings.redis_url)
            env["SYNERGAI_PORT"] = str(settings.port)
            if settings.grpc_port is not None:
                env["SYNERGAI_GRPC_PORT"] = str(settings.grpc_port)
            uvicorn.run(
                "gateway.server:app_from_env",
                factory=True,
                workers=workers,
                host=settings.host,
                port=settings.port,
                loop="uvloop",
                http="httptools",
                access_log=False,
                log_level=settings.log_level,
                log_config=None,
                timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
                backlog=4096,
                proxy_headers=False,  # per-request costs for nothing: see the module doc
                server_header=False,
            )
            return 0
        app = create_app(settings)
        server = InProcessServer(_uvicorn_config(app, settings))
        tune_gc()
        import uvloop

        uvloop.run(_serve_until_signalled(server))
        return 0 if server.started else 1
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve_until_signalled(server: uvicorn.Server) -> None:
    """Serve; SIGTERM/SIGINT drain gracefully (a second one forces), and the exit code is 0.

    (``uvicorn.Server.run`` re-raises the signal after shutdown, so the process would die
    with -15 instead of exiting 0 after a clean drain.)
    """
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await server.serve()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (demo, tests, benchmarks).

    ``uvicorn.Server.serve`` installs its own SIGINT/SIGTERM handlers and re-raises the signal
    after shutdown; an embedding program that owns the process (``synergai demo``) stops it with
    ``should_exit = True`` instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not touch signal handlers."""
        yield


def inprocess_config(
    app: object, host: str, port: int, log_level: str = "warning"
) -> uvicorn.Config:
    """Uvicorn settings for an embedded gateway (uvloop + httptools, no access log)."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=None,
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
        proxy_headers=False,  # per-request costs for nothing: see the module doc
        server_header=False,
    )


class ServerThread:
    """Runs an app on uvicorn in a thread with its own event loop (tests, sync callers).

    Use as a context manager: on enter it waits until the server accepts connections (raising
    if start-up failed); on exit it asks it to stop and joins the thread.
    """

    def __init__(self, app: object, host: str = "127.0.0.1", port: int = 0) -> None:
        from gateway.core.net import free_port

        self.host = host
        self.port = port or free_port(host)
        self.server = InProcessServer(inprocess_config(app, host, self.port))
        self._thread = threading.Thread(target=self._run, name="synergai-server", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            import uvloop

            uvloop.run(self.server.serve())
        except BaseException as exc:  # reported to the starting thread
            self.error = exc

    def start(self, timeout_s: float = 30.0) -> None:
        """Start and wait until serving.

        Raises:
            RuntimeError: the server failed to start or did not start in time.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway did not start: {self.error!r}")
            time.sleep(0.01)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the server to exit (graceful) and join the thread."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
