"""The Redis worker registry: workers (or their launcher) register with a heartbeat and expire.

Key layout (beside the shared-state keys, same prefix)::

    <prefix>:reg:ids      set     every worker id ever registered (pruned as entries expire)
    <prefix>:reg:w:<id>   string  the worker as JSON ({id, pool, arch, url, grpc_url,
                                  metrics_url, instances, rtt_ms, models}), EX ttl_s

A :class:`Registrar` rewrites each entry (``SET ... EX ttl``) every ``ttl_s / 3`` from a daemon
thread, so a launcher that dies stops refreshing and its workers vanish from every gateway
within ``ttl_s`` plus one discovery interval; a clean stop deletes them at once.
:class:`RegistrySource` is the gateway's side: ``SMEMBERS`` then ``MGET`` (two round trips per
discovery interval, never on the request path).

For ``synergai workers`` (``workers/fleet.py``), one line after the fleet is up::

    start_registration([w.as_config() for w in workers], os.environ)

registers the fleet when ``SYNERGAI_REGISTRY_URL`` (or ``REDIS_URL``) is set, and does nothing
otherwise.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.discovery.base import worker_from_dict
from gateway.routing.types import WorkerInfo

__all__ = ["Registrar", "RegistrySource", "registry_keys", "start_registration"]

log = logging.getLogger(__name__)


def registry_keys(prefix: str) -> tuple[str, str]:
    """``(id set key, entry key prefix)`` for ``prefix``."""
    return f"{prefix}:reg:ids", f"{prefix}:reg:w:"


class Registrar:
    """Keeps a set of workers registered in Redis while it runs (a daemon thread).

    Args:
        url: Redis URL.
        workers: config-style mappings (``id``, ``pool``, ``arch``, ``url``, ``models``, ...).
        ttl_s: how long an entry outlives its last heartbeat.
        prefix: key prefix (the gateways' ``redis_prefix``).
    """

    def __init__(
        self,
        url: str,
        workers: Sequence[Mapping[str, Any]],
        *,
        ttl_s: float = 10.0,
        prefix: str = "synergai",
    ) -> None:
        for w in workers:
            worker_from_dict(w)  # fail early on a malformed entry
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._entries = {str(w["id"]): json.dumps(dict(w), sort_keys=True) for w in workers}
        self._ttl_ms = max(int(ttl_s * 1000), 1000)
        self._ids, self._entry = registry_keys(prefix)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeats = 0
        """Successful heartbeats (tests)."""

    def heartbeat(self) -> bool:
        """Write every entry once (one pipelined round trip); False if Redis did not answer."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for wid, doc in self._entries.items():
                pipe.set(self._entry + wid, doc, px=self._ttl_ms)
            if self._entries:
                pipe.sadd(self._ids, *self._entries)
            pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("worker registry heartbeat failed: %r", exc)
            return False
        self.heartbeats += 1
        return True

    def _run(self) -> None:
        period = self._ttl_ms / 3000.0
        while not self._stop.wait(period):
            self.heartbeat()

    def start(self) -> Registrar:
        """Register now and keep heartbeating in the background; returns ``self``."""
        self.heartbeat()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="synergai-registrar", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, deregister: bool = True) -> None:
        """Stop heartbeating and (by default) delete the entries at once."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if deregister and self._entries:
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.delete(*(self._entry + w for w in self._entries))
                pipe.srem(self._ids, *self._entries)
                pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("worker registry: could not deregister (entries expire): %r", exc)
        self._client.close()


def start_registration(
    workers: Sequence[Mapping[str, Any]], env: Mapping[str, str], ttl_s: float = 10.0
) -> Registrar | None:
    """Register ``workers`` when the environment names a registry; deregister at exit.

    The registry is ``SYNERGAI_REGISTRY_URL``, else ``REDIS_URL``; the prefix
    ``SYNERGAI_REDIS_PREFIX`` (default ``synergai``). Returns the running registrar, or ``None``
    when no registry is configured.
    """
    url = env.get("SYNERGAI_REGISTRY_URL") or env.get("REDIS_URL")
    if not url:
        return None
    reg = Registrar(url, workers, ttl_s=ttl_s, prefix=env.get("SYNERGAI_REDIS_PREFIX", "synergai"))
    reg.start()
    atexit.register(reg.stop)
    return reg


class RegistrySource:
    """Workers registered in Redis (see the module docstring for the layout)."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "synergai", timeout_s: float = 1.0) -> None:
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._ids, self._entry = registry_keys(prefix)

    async def workers(self) -> Sequence[WorkerInfo] | None:
        """Live entries; ``None`` when Redis does not answer (the loop keeps the last list)."""
        try:
            members = await self._client.smembers(self._ids)  # type: ignore[misc]
            ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
            docs = await self._client.mget([self._entry + i for i in ids]) if ids else []
        except (RedisError, OSError) as exc:
            log.debug("worker registry unreachable: %r", exc)
            return None
        out: list[WorkerInfo] = []
        gone: list[str] = []
        for wid, doc in zip(ids, docs, strict=True):
            if doc is None:
                gone.append(wid)
                continue
            try:
                out.append(worker_from_dict(json.loads(doc)))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("worker registry: bad entry %s: %r", wid, exc)
        if gone:
            try:
                await self._client.srem(self._ids, *gone)  # type: ignore[misc]
            except (RedisError, OSError):
                pass  # pruning is best effort; the entry is gone either way
        return out

    async def close(self) -> None:
        """Close the client."""
        await self._client.aclose()
