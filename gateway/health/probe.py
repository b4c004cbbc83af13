"""Active readiness probe of one Triton worker: the server, then every model it should serve.

``GET /v2/health/ready`` must answer 200, then ``GET /v2/models/{m}/ready`` for each model the
worker is configured with (a server can be ready while a model it should serve failed to
load, or was unloaded). The probe reports the first failure in words for the ops view, and
whether it was a refused connection (the process is gone: no need to wait for a second probe).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from gateway.errors import GatewayError, UpstreamConnectError
from gateway.routing.types import WorkerInfo
from gateway.upstream.base import Upstream

__all__ = ["ProbeResult", "probe_worker"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's verdict.

    Attributes:
        ok: the server and every configured model are ready.
        refused: no connection could be made.
        detail: what failed (empty when ``ok``).
    """

    ok: bool
    refused: bool = False
    detail: str = ""


async def _ready(upstream: Upstream, worker: WorkerInfo, path: str, timeout_s: float) -> str:
    resp = await upstream.call(worker, path, None, {}, timeout_s)
    return "" if resp.ok else f"{path} answered {resp.http_status}"


async def probe_worker(
    upstream: Upstream, worker: WorkerInfo, timeout_s: float, models: bool = True
) -> ProbeResult:
    """Probe ``worker`` over its REST endpoint.

    Args:
        upstream: the REST upstream (GETs).
        worker: the worker.
        timeout_s: time allowed for each GET.
        models: also check every configured model's readiness.
    """
    try:
        bad = await _ready(upstream, worker, "/v2/health/ready", timeout_s)
        if not bad and models:
            for m in worker.models:
                bad = await _ready(
                    upstream, worker, f"/v2/models/{quote(m, safe='')}/ready", timeout_s
                )
                if bad:
                    break
    except UpstreamConnectError as exc:
        return ProbeResult(False, True, exc.message)
    except GatewayError as exc:
        return ProbeResult(False, False, exc.message)
    return ProbeResult(not bad, False, bad)
