"""REST upstream on ``aiohttp`` (HTTP/1.1 keep-alive, one connector for all workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from gateway.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from gateway.routing.types import WorkerInfo
from gateway.upstream.base import PASS_RESPONSE_HEADERS, UpstreamResponse

__all__ = ["AiohttpUpstream"]


class AiohttpUpstream:
    """One ``aiohttp.ClientSession``; its connector pools connections per worker host."""

    def __init__(
        self, *, connect_timeout_s: float = 1.0, max_connections_per_worker: int = 256
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._per_host = max_connections_per_worker
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        """Create the session (must run inside the serving event loop)."""
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self._per_host,
            keepalive_timeout=60.0,
            use_dns_cache=True,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(timeout_s)
        if found is None:
            found = aiohttp.ClientTimeout(
                total=timeout_s, sock_connect=min(self._connect_timeout_s, timeout_s)
            )
            if len(self._timeouts) < 1024:
                self._timeouts[timeout_s] = found
        return found

    async def call(
        self,
        worker: WorkerInfo,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        """Forward one request; see :class:`gateway.upstream.base.Upstream`."""
        session = self._session
        if session is None:
            raise UpstreamError("upstream client not started")
        try:
            async with session.request(
                "POST" if body is not None else "GET",
                worker.url + target,
                data=body,
                headers=headers,
                timeout=self._timeout(timeout_s),
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                rh = resp.headers
                return UpstreamResponse.from_http(
                    status=resp.status,
                    body=data,
                    headers={k: rh[k] for k in PASS_RESPONSE_HEADERS if k in rh},
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # no connection was made: the worker never saw the request (retry-safe)
            raise UpstreamConnectError(
                f"worker {worker.id} unreachable: {type(exc).__name__}"
            ) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(f"worker {worker.id} did not answer in {timeout_s:g} s") from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"worker {worker.id} unreachable: {type(exc).__name__}") from exc
