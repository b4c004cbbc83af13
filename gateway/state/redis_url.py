"""``REDIS_URL`` forms and the redis-py client each one gets.

The accepted forms (anything else is rejected at start-up with a message that lists them)::

    redis://[[user]:password@]host[:port][/db]        one node, plain TCP
    unix://[[user]:password@]/path/to/socket[?db=N]   one node, unix socket
    rediss://[[user]:password@]host[:port][/db]       one node, TLS (redis-py's query options:
                                                     ?ssl_cert_reqs=required&ssl_ca_certs=...)
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]
    rediss+sentinel://...                             Sentinel: the current master of
                                                     ``service``, found through the listed
                                                     sentinels (TLS to master and sentinels
                                                     with ``rediss+``); ``?sentinel_password=``
                                                     when the sentinels need their own
    redis+cluster://[[user]:password@]host:port[,host:port...]
    rediss+cluster://...                              Redis Cluster: any reachable nodes seed
                                                     the topology; redis-py follows MOVED/ASK

``redis://`` and ``unix://`` run the hot path on :class:`gateway.state.resp.RespClient`; every
other form runs it on redis-py (:func:`redis_client`). Every script touches the keys of one
worker only, all in one hash slot (``{<worker>}`` tags: docs/architecture.md), which is what
Cluster needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

__all__ = ["FORMS", "RedisTarget", "parse_redis_url", "redis_client"]

FORMS = (
    "redis://host[:port][/db]",
    "unix:///path/to/socket[?db=N]",
    "rediss://host[:port][/db] (TLS)",
    "redis+sentinel://host:port[,host:port...]/service[/db] (rediss+sentinel:// for TLS)",
    "redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS)",
)
"""The ``REDIS_URL`` forms, for error messages and ``--help``."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed ``REDIS_URL``.

    Attributes:
        kind: ``"node"`` (redis, rediss, unix), ``"sentinel"`` or ``"cluster"``.
        url: for ``"node"`` the URL itself (redis-py parses it).
        nodes: the sentinels (``"sentinel"``) or seed nodes (``"cluster"``), ``(host, port)``.
        service: the Sentinel service (master) name.
        db: database number (``"sentinel"``; Cluster has only 0).
        tls: ``rediss+...``.
        username: ACL user, if any.
        password: password of the data nodes, if any.
        sentinel_password: the sentinels' own password (``?sentinel_password=``), if any.
    """

    kind: str
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def _bad(url: str, why: str) -> ValueError:
    forms = "; ".join(FORMS)
    return ValueError(f"REDIS_URL {_redact(url)!r}: {why}; accepted forms: {forms}")


def _redact(url: str) -> str:
    u = urlparse(url)
    if u.password is None:
        return url
    return url.replace(f":{u.password}@", ":***@", 1)


def _nodes(url: str, netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = netloc.rpartition("@")[2]
    out = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host:
            host, port = port, ""
        host = host.strip("[]")  # [::1]:26379
        if not host:
            raise _bad(url, "empty host")
        try:
            out.append((host, int(port) if port else default_port))
        except ValueError:
            raise _bad(url, f"bad port {port!r}") from None
    return tuple(out)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse and check ``url`` (raises :class:`ValueError` naming the accepted forms)."""
    u = urlparse(url)
    scheme = u.scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        if scheme != "unix" and not u.hostname:
            raise _bad(url, "no host")
        return RedisTarget("node", url, tls=scheme == "rediss")
    base, plus, kind = scheme.partition("+")
    if not plus or base not in ("redis", "rediss") or kind not in ("sentinel", "cluster"):
        raise _bad(url, f"unknown scheme {u.scheme!r}")
    user = unquote(u.username) if u.username else None
    pw = unquote(u.password) if u.password is not None else None
    query = parse_qs(u.query)
    if kind == "cluster":
        if u.path.strip("/") not in ("", "0"):
            raise _bad(url, "Redis Cluster has database 0 only")
        return RedisTarget(
            "cluster", url, _nodes(url, u.netloc, 6379), tls=base == "rediss", username=user,
            password=pw,
        )  # fmt: skip
    parts = [p for p in u.path.split("/") if p]
    if not parts or len(parts) > 2:
        raise _bad(url, "Sentinel needs /service[/db]")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise _bad(url, f"bad database {parts[1]!r}") from None
    spw = query.get("sentinel_password", [None])[0]
    return RedisTarget(
        "sentinel", url, _nodes(url, u.netloc, 26379), unquote(parts[0]), db, base == "rediss",
        user, pw, spw,
    )  # fmt: skip


def redis_client(url: str, timeout_s: float, max_connections: int) -> aioredis.Redis | RedisCluster:
    """A redis-py client for ``url``: short socket timeouts, no retries (the store backs off).

    One node: a blocking pool (a call waits for a free connection up to the timeout instead of
    failing a burst at once). Sentinel: the current master of the service (redis-py follows a
    failover). Cluster: :class:`redis.asyncio.cluster.RedisCluster` seeded by the listed nodes.
    """
    t = parse_redis_url(url)
    sock: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": max(timeout_s, 0.2),
    }
    if t.kind == "node":
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            **sock,
        )
        return aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
    auth: dict[str, Any] = {"username": t.username, "password": t.password}
    if t.tls:
        auth["ssl"] = True
    if t.kind == "sentinel":
        skw: dict[str, Any] = dict(sock)
        if t.sentinel_password is not None:
            skw["password"] = t.sentinel_password
        if t.tls:
            skw["ssl"] = True
        sentinel = Sentinel(list(t.nodes), sentinel_kwargs=skw, **sock)
        master: aioredis.Redis = sentinel.master_for(
            t.service,
            db=t.db,
            max_connections=max_connections,
            retry=Retry(NoBackoff(), 0),
            **auth,
            **sock,
        )
        return master
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in t.nodes],
        max_connections=max_connections,
        retry=Retry(NoBackoff(), 0),
        **auth,
        **sock,
    )
