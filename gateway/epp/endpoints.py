"""A worker's ``ip:port`` as Envoy names its hosts (what the picker must answer with).

Envoy matches a pick against its cluster's hosts by resolved address, so the picker answers
with IP literals: a worker configured by IP (Kubernetes discovery gives pod IPs) is used as is;
one configured by hostname (docker compose service names) is resolved here, as Envoy's
``STRICT_DNS`` cluster resolves it, and re-resolved after :data:`RESOLVE_TTL_S`. Results are
memoized per URL, so the hot path does one dict lookup.
"""

from __future__ import annotations

import ipaddress
import socket
import time

from gateway.routing.types import WorkerInfo

__all__ = ["RESOLVE_TTL_S", "endpoint_of", "host_port", "is_ip"]

RESOLVE_TTL_S = 30.0
"""Seconds a hostname's address is reused (a restarted container may come back elsewhere)."""

_memo: dict[str, tuple[str, float]] = {}


def host_port(endpoint: str) -> tuple[str, int]:
    """``("127.0.0.1", 8000)`` from ``http://127.0.0.1:8000``, ``127.0.0.1:8000`` or ``[::1]:80``.

    Raises:
        ValueError: no port in ``endpoint``.
    """
    rest = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} has no port")
    return host.strip("[]"), int(port)


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _resolve(url: str) -> tuple[str, float]:
    host, port = host_port(url)
    if is_ip(host):
        return _join(host, port), float("inf")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return _join(host, port), time.monotonic() + 1.0  # Envoy will not match it either
    addr = str(infos[0][4][0])
    return _join(addr, port), time.monotonic() + RESOLVE_TTL_S


def endpoint_of(worker: WorkerInfo, grpc_call: bool) -> str:
    """``ip:port`` of ``worker`` for REST (its ``url``) or gRPC (its ``grpc_url``)."""
    url = worker.grpc_url if grpc_call else worker.url
    found = _memo.get(url)
    if found is None or found[1] < time.monotonic():
        found = _resolve(url)
        _memo[url] = found
    return found[0]
