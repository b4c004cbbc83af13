"""Kubernetes EndpointSlice discovery: one worker per ready pod of each labelled pool Service.

The pool Services (``k8s/base/pools/*.yaml``) carry ``synergai.io/pool`` and
``synergai.io/arch``; Kubernetes copies a Service's labels onto its EndpointSlices, so one
``GET /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices?labelSelector=synergai.io/pool``
lists every pod of every pool. Per endpoint whose ``conditions.ready`` is not false::

    id          = targetRef.name (the pod), else "<pool>@<address>"
    url         = http://<address>:<port named http>
    grpc_url    = <address>:<port named grpc>
    metrics_url = http://<address>:<port named metrics>/metrics
    models, instances, rtt_ms from the pool's template (``discovery.kubernetes.pools``)

Plain HTTP with aiohttp against the API server, authenticated with the in-cluster service
account token (re-read on every call: tokens rotate) and its CA; the RBAC is in
``k8s/base/gateway/rbac.yaml`` (get/list/watch endpointslices in the namespace). Polling, not
watching: one list per discovery interval is cheap at pool scale and needs no resume logic.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from gateway.discovery.config import KubernetesDiscovery, PoolTemplate
from gateway.routing.types import WorkerInfo

__all__ = ["ARCH_LABEL", "POOL_LABEL", "EndpointSliceSource", "workers_from_slices"]

log = logging.getLogger(__name__)

POOL_LABEL = "synergai.io/pool"
ARCH_LABEL = "synergai.io/arch"
_MAX_PAGES = 50


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def workers_from_slices(
    items: Sequence[Mapping[str, Any]], templates: Mapping[str, PoolTemplate]
) -> list[WorkerInfo]:
    """Workers of a list of EndpointSlice objects (pure; see the module docstring)."""
    out: dict[str, WorkerInfo] = {}
    for item in items:
        labels = (item.get("metadata") or {}).get("labels") or {}
        pool, arch = labels.get(POOL_LABEL), labels.get(ARCH_LABEL)
        if not pool or not arch:
            continue
        tpl = templates.get(pool)
        if tpl is None:
            log.warning("discovery: pool %s has no template (models unknown); skipped", pool)
            continue
        ports = {p.get("name"): p.get("port") for p in item.get("ports") or [] if p.get("port")}
        http = ports.get("http")
        if http is None:
            continue
        for ep in item.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            addrs = ep.get("addresses") or []
            if not addrs:
                continue
            host = _host(str(addrs[0]))
            ref = ep.get("targetRef") or {}
            wid = str(ref.get("name") or f"{pool}@{addrs[0]}")
            grpc, metrics = ports.get("grpc"), ports.get("metrics")
            out[wid] = WorkerInfo(
                id=wid,
                pool=str(pool),
                arch=str(arch),
                models=tuple(tpl.models),
                instances=tpl.instances,
                rtt_ms=tpl.rtt_ms,
                url=f"http://{host}:{http}",
                grpc_url=f"{host}:{grpc}" if grpc else "",
                metrics_url=f"http://{host}:{metrics}/metrics" if metrics else "",
            )
    return list(out.values())


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


class EndpointSliceSource:
    """Lists EndpointSlices of the pool Services (see the module docstring).

    Args:
        cfg: the ``discovery.kubernetes`` settings.
        templates: per pool, what its pods serve.
        env: the process environment (``KUBERNETES_SERVICE_HOST`` / ``_PORT``).
        session: an aiohttp session (default: created on first use, closed by :meth:`close`).
    """

    name = "kubernetes"

    def __init__(
        self,
        cfg: KubernetesDiscovery,
        templates: Mapping[str, PoolTemplate],
        env: Mapping[str, str],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._cfg = cfg
        self._templates = dict(templates)
        api = cfg.api_url
        if api is None and env.get("KUBERNETES_SERVICE_HOST"):
            host = _host(env["KUBERNETES_SERVICE_HOST"])
            api = f"https://{host}:{env.get('KUBERNETES_SERVICE_PORT', '443')}"
        self._api = api.rstrip("/") if api else None
        self._namespace = cfg.namespace or _read(cfg.namespace_path) or "default"
        self._session = session
        self._own = session is None
        self._ssl: ssl.SSLContext | bool = True
        if cfg.ca_path.exists():
            self._ssl = ssl.create_default_context(cafile=str(cfg.ca_path))

    @property
    def url(self) -> str | None:
        """The EndpointSlice list URL (``None``: no API server configured)."""
        if self._api is None:
            return None
        ns = self._namespace
        return f"{self._api}/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"

    async def _list(self, url: str) -> list[Mapping[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Accept": "application/json"}
        token = _read(self._cfg.token_path)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = aiohttp.ClientTimeout(total=self._cfg.timeout_s)
        items: list[Mapping[str, Any]] = []
        params = {"labelSelector": self._cfg.label_selector, "limit": "500"}
        ssl_arg: ssl.SSLContext | bool = self._ssl if url.startswith("https") else True
        for _ in range(_MAX_PAGES):
            async with self._session.get(
                url, params=params, headers=headers, timeout=timeout, ssl=ssl_arg
            ) as resp:
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, (), status=resp.status, message=await resp.text()
                    )
                doc = await resp.json()
            items.extend(doc.get("items") or [])
            cont = (doc.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params["continue"] = cont
        raise aiohttp.ClientError("too many EndpointSlice pages")

    async def workers(self) -> Sequence[WorkerInfo] | None:
        """Ready pods of every labelled pool; ``None`` when the API server does not answer."""
        url = self.url
        if url is None:
            log.warning("kubernetes discovery: no API server (KUBERNETES_SERVICE_HOST unset)")
            return None
        try:
            items = await self._list(url)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning("kubernetes discovery failed: %r", exc)
            return None
        return workers_from_slices(items, self._templates)

    async def close(self) -> None:
        """Close the session if created here."""
        session, self._session = self._session, None
        if session is not None and self._own:
            await session.close()
