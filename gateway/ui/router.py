"""The operator page's routes: ``/synergai/ui`` (static page) and ``/synergai/v1/stats`` (JSON).

The page itself is static HTML + JS (``static/``, no build step, no CDN) that polls two JSON
endpoints: ``/synergai/v1/workers`` (served by the gateway's API) and ``/synergai/v1/stats``
(served here, from a :class:`~gateway.ui.stats.StatsSource`). Without an explicit source the
stats come from the app's own ``GET /metrics`` (:class:`~gateway.ui.prom.AsgiMetricsSource`),
so ``app.include_router(ui_router())`` is the whole wiring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.ui.prom import AsgiMetricsSource
from gateway.ui.stats import StatsHistory, StatsSource

__all__ = ["UI_PATH", "ui_router"]

UI_PATH = "/synergai/ui"
STATS_PATH = "/synergai/v1/stats"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every shipped asset by file name, read once (a fixed table: no path traversal)."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("gateway.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in _MEDIA_TYPES:
            files[entry.name] = (entry.read_bytes(), _MEDIA_TYPES[suffix])
    return files


def ui_router(
    stats: StatsSource | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    window_s: float = 600.0,
    recent_s: float = 60.0,
) -> APIRouter:
    """Build the router for the operator page.

    Args:
        stats: where the request/violation counters come from; ``None`` scrapes the app's own
            ``/metrics`` in process on each poll.
        clock: seconds, monotonic; injected for tests.
        window_s: how much history ``/synergai/v1/stats`` keeps (s).
        recent_s: the window of its ``recent`` and ``pools`` summaries (s).

    Returns:
        A router serving ``GET /synergai/ui``, ``GET /synergai/ui/static/{name}`` and
        ``GET /synergai/v1/stats``.
    """
    router = APIRouter(tags=["ui"])
    files = _static_files()
    history = StatsHistory(window_s=window_s)
    sources: dict[str, StatsSource] = {}
    if stats is not None:
        sources["default"] = stats

    @router.get(UI_PATH, include_in_schema=False)
    async def page() -> HTMLResponse:
        body, _ = files["index.html"]
        return HTMLResponse(body, headers={"Cache-Control": "no-cache"})

    @router.get(UI_PATH + "/", include_in_schema=False)
    async def page_slash() -> RedirectResponse:
        return RedirectResponse("../ui")  # relative: keeps any path prefix in front

    @router.get(UI_PATH + "/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in files:
            raise HTTPException(status_code=404, detail=f"no asset {name!r}")
        body, media_type = files[name]
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    @router.get(STATS_PATH)
    async def get_stats(request: Request) -> JSONResponse:
        """Recent request and SLO-violation rates, and predicted vs actual latency per pool."""
        source = sources.get("default")
        if source is None:
            source = sources.setdefault("default", AsgiMetricsSource(request.app))
        now = clock()
        try:
            sample = await source.sample()
        except Exception as exc:  # any failure of the source is shown on the page, not raised
            body: dict[str, Any] = history.to_json(now, recent_s)
            body["available"] = False
            body["error"] = f"{type(exc).__name__}: {exc}"[:300]
            return JSONResponse(body)
        history.add(now, sample)
        return JSONResponse(history.to_json(now, recent_s))

    return router
