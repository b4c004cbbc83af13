"""REST upstream on ``httpx.AsyncClient`` (HTTP/1.1 keep-alive pool shared by all workers)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from gateway.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from gateway.routing.types import WorkerInfo
from gateway.upstream.base import PASS_RESPONSE_HEADERS, UpstreamResponse

__all__ = ["HttpxUpstream"]


class HttpxUpstream:
    """One ``httpx.AsyncClient`` for every worker (connections pooled per host)."""

    def __init__(self, *, connect_timeout_s: float = 1.0, max_connections: int = 256) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._max = max_connections
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Create the client."""
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=None,
                max_keepalive_connections=self._max,
                keepalive_expiry=60.0,
            ),
            timeout=httpx.Timeout(30.0, connect=self._connect_timeout_s),
            http2=False,
            trust_env=False,
        )
        # Pass bytes through: never ask for compression the client did not ask for, and
        # never decode what the worker compressed (the client gets Content-Encoding as is).
        self._client.headers.pop("accept-encoding", None)

    async def close(self) -> None:
        """Close the pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def call(
        self,
        worker: WorkerInfo,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        """Forward one request; see :class:`gateway.upstream.base.Upstream`."""
        client = self._client
        if client is None:
            raise UpstreamError("upstream client not started")
        timeout = httpx.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s))
        try:
            req = client.build_request(
                "POST" if body is not None else "GET",
                worker.url + target,
                content=body,
                headers=headers,
                timeout=timeout,
            )
            resp = await client.send(req, stream=True)
            try:
                data = b"".join([chunk async for chunk in resp.aiter_raw()])
            finally:
                await resp.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # no connection was made: the worker never saw the request (retry-safe)
            raise UpstreamConnectError(
                f"worker {worker.id} unreachable: {type(exc).__name__}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"worker {worker.id} did not answer in {timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"worker {worker.id} unreachable: {type(exc).__name__}") from exc
        rh = resp.headers
        return UpstreamResponse.from_http(
            status=resp.status_code,
            body=data,
            headers={k: rh[k] for k in PASS_RESPONSE_HEADERS if k in rh},
        )
