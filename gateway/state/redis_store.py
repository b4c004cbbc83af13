"""The Redis (Valkey) :class:`~gateway.state.store.StateStore`: atomic, leased, fail-open.

Key layout (also in docs/architecture.md); ``{id}`` is a Redis Cluster hash tag, so both keys of
a worker live in one slot and each script touches one slot::

    <prefix>:w:{<worker>}   hash  out      requests in flight, all gateways (integer >= 0)
                                  work_us  predicted outstanding work, microseconds (>= 0)
    <prefix>:l:{<worker>}   zset  member <gateway>:<seq>:<work_us>, score = lease expiry (ms,
                                  Redis server clock)

Invariants: ``out`` equals the number of live lease members and ``work_us`` their sum, because
a counter moves only when a lease member is added (``ZADD NX``) or removed (``ZREM`` answered 1).
Releasing an expired or unknown lease therefore changes nothing, and the counts never go
negative, also after a Redis restart that lost the data. Using the server's ``TIME`` for lease
expiry keeps gateway clocks out of it.

Transport: for ``redis://`` and ``unix://`` URLs, :class:`gateway.state.resp.RespClient`, one
pipelined connection (a script call costs ~80 µs of CPU against ~310 µs with redis-py on the
CI VM, and there are two per request); other URLs (``rediss://``...) use redis-py with a
bounded pool in which a call waits for a free connection up to the timeout. Scripts run with
``EVALSHA`` and fall back to ``EVAL`` when the server lost its script cache (restart).

Fail open: every call has a short socket timeout; on an error the store answers ``None`` and
backs off (exponentially, up to ``backoff_max_s``) before touching Redis again, so a dead Redis
costs the hot path nothing; the first call after the back-off is the reconnection probe.

A release that fails is queued (bounded, oldest dropped) and retried before the next
snapshot, so counts return to the truth as soon as Redis answers again instead of after a lease
TTL. Retrying is safe because a release is idempotent; a reservation that timed out at the
client but ran on the server is undone the same way (callers release after a failed reserve).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.core.clock import Clock
from gateway.state.resp import RespClient, RespError, supports
from gateway.state.store import Lease, WorkerLoad

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZADD', KEYS[2], 'NX', now + tonumber(ARGV[3]), ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'out', 1)
  redis.call('HINCRBY', KEYS[1], 'work_us', tonumber(ARGV[2]))
end
return redis.call('HMGET', KEYS[1], 'out', 'work_us')
"""

_RELEASE = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  local out = redis.call('HINCRBY', KEYS[1], 'out', -1)
  local work = redis.call('HINCRBY', KEYS[1], 'work_us', -tonumber(ARGV[2]))
  if out <= 0 then
    redis.call('HSET', KEYS[1], 'out', 0, 'work_us', 0)
  elseif work < 0 then
    redis.call('HSET', KEYS[1], 'work_us', 0)
  end
end
return redis.call('HMGET', KEYS[1], 'out', 'work_us')
"""

_EXPIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(dead) do
  if redis.call('ZREM', KEYS[2], m) == 1 then
    local us = tonumber(string.match(m, ':(%d+)$')) or 0
    local out = redis.call('HINCRBY', KEYS[1], 'out', -1)
    local work = redis.call('HINCRBY', KEYS[1], 'work_us', -us)
    if out <= 0 then
      redis.call('HSET', KEYS[1], 'out', 0, 'work_us', 0)
    elseif work < 0 then
      redis.call('HSET', KEYS[1], 'work_us', 0)
    end
  end
end
return #dead
"""


@dataclass(frozen=True)
class _Script:
    text: str
    sha: str

    @classmethod
    def of(cls, text: str) -> _Script:
        return cls(text, hashlib.sha1(text.encode()).hexdigest())  # Redis names scripts by SHA-1


class _Backend(Protocol):
    async def eval(
        self, script: _Script, keys: Sequence[str], args: Sequence[Any], defer: bool = False
    ) -> Any: ...
    async def hmget_many(self, keys: Sequence[str], fields: Sequence[str]) -> list[Any]: ...
    async def ping(self) -> Any: ...
    async def close(self) -> None: ...


class _RespBackend:
    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self._c = RespClient(url, connect_timeout_s)

    async def eval(
        self, script: _Script, keys: Sequence[str], args: Sequence[Any], defer: bool = False
    ) -> Any:
        try:
            return await self._c.call("EVALSHA", script.sha, len(keys), *keys, *args, defer=defer)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self._c.call("EVAL", script.text, len(keys), *keys, *args)

    async def hmget_many(self, keys: Sequence[str], fields: Sequence[str]) -> list[Any]:
        return await self._c.pipeline([["HMGET", k, *fields] for k in keys])

    async def ping(self) -> Any:
        return await self._c.call("PING")

    async def close(self) -> None:
        await self._c.close()


class _RedisPyBackend:
    def __init__(self, client: aioredis.Redis) -> None:
        self._c = client

    async def eval(
        self, script: _Script, keys: Sequence[str], args: Sequence[Any], defer: bool = False
    ) -> Any:
        try:
            return await self._c.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            return await self._c.eval(script.text, len(keys), *keys, *args)  # type: ignore[no-untyped-call]

    async def hmget_many(self, keys: Sequence[str], fields: Sequence[str]) -> list[Any]:
        async with self._c.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.hmget(k, *fields)
            return list(await pipe.execute())

    async def ping(self) -> Any:
        return await self._c.ping()

    async def close(self) -> None:
        return None  # the store closes the shared client


_ERRORS = (RedisError, RespError, OSError, TimeoutError)
"""What a failed call raises (ConnectionError is an OSError)."""


def _load(raw: Sequence[Any]) -> WorkerLoad:
    out, work = raw[0], raw[1]
    return WorkerLoad(int(out or 0), int(work or 0) / 1000.0)


class RedisStore:
    """Redis-backed store; see the module docstring for the layout and failure behaviour."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        prefix: str = "synergai",
        timeout_s: float = 0.05,
        lease_ttl_s: float = 60.0,
        backoff_max_s: float = 2.0,
        max_connections: int = 128,
    ) -> None:
        # redis-py: for ops, tests, and URLs the RESP client does not handle. Its pool waits
        # (up to the timeout) for a free connection instead of failing a burst at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=max(timeout_s, 0.2),
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._client: aioredis.Redis = aioredis.Redis(
            connection_pool=pool, retry=Retry(NoBackoff(), 0)
        )
        self._backend: _Backend = (
            _RespBackend(url, max(timeout_s, 0.2))
            if supports(url)
            else _RedisPyBackend(self._client)
        )
        self._clock = clock
        self._prefix = prefix
        self._timeout = timeout_s
        self._ttl_ms = int(lease_ttl_s * 1000)
        self._backoff_min = min(0.05, backoff_max_s)
        self._backoff_max = backoff_max_s
        self._backoff = self._backoff_min
        self._down_until = 0.0
        self._down = False
        self.errors = 0
        """Calls that failed since start (for metrics and tests)."""
        self.round_trips = 0
        """Calls that reached Redis (for the round-trips-per-request check)."""
        self._pending: dict[str, Lease] = {}
        self._max_pending = 10_000
        self._reserve = _Script.of(_RESERVE)
        self._release = _Script.of(_RELEASE)
        self._expire = _Script.of(_EXPIRE)

    @property
    def available(self) -> bool:
        """False while backing off after an error."""
        return not self._down or self._clock.now() >= self._down_until

    @property
    def client(self) -> aioredis.Redis:
        """A redis-py client on the same server (ops and tests; not the hot path)."""
        return self._client

    def keys(self, worker: str) -> tuple[str, str]:
        """``(load hash, lease zset)`` keys of ``worker``."""
        return f"{self._prefix}:w:{{{worker}}}", f"{self._prefix}:l:{{{worker}}}"

    async def start(self) -> None:
        """Probe once so a misconfigured URL is logged early; never raises."""
        try:
            async with asyncio.timeout(max(self._timeout, 0.5)):
                await self._backend.ping()
        except _ERRORS as exc:
            self._fail(exc)

    async def close(self) -> None:
        """Close connections."""
        await self._backend.close()
        await self._client.aclose(close_connection_pool=True)

    def _fail(self, exc: BaseException) -> None:
        self.errors += 1
        if not self._down:
            log.warning("redis unavailable, routing on the local view: %r", exc)
        else:
            self._backoff = min(self._backoff * 2.0, self._backoff_max)
        self._down = True
        self._down_until = self._clock.now() + self._backoff

    def _ok(self) -> None:
        if self._down:
            log.warning("redis reachable again")
            self._down = False
            self._backoff = self._backoff_min

    async def _run(
        self, script: _Script, keys: Sequence[str], args: Sequence[Any], defer: bool = False
    ) -> Any:
        if not self.available:
            return None
        self.round_trips += 1
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._backend.eval(script, keys, args, defer)
        except _ERRORS as exc:
            self._fail(exc)
            return None
        self._ok()
        return result

    async def reserve(self, lease: Lease) -> WorkerLoad | None:
        """Atomically add the lease and its work; post-op fleet-wide load, or ``None``."""
        args = [_member(lease), lease.work_us, self._ttl_ms]
        raw = await self._run(self._reserve, self.keys(lease.worker), args)
        return None if raw is None else _load(raw)

    async def release(self, lease: Lease) -> WorkerLoad | None:
        """Atomically drop the lease and its work if still held; post-op load, or ``None``.

        On failure the lease is queued and released again before the next snapshot.
        """
        args = [_member(lease), lease.work_us]
        raw = await self._run(self._release, self.keys(lease.worker), args, defer=True)
        if raw is None:
            if len(self._pending) >= self._max_pending:
                self._pending.pop(next(iter(self._pending)))
            self._pending[lease.token] = lease
            return None
        return _load(raw)

    @property
    def pending_releases(self) -> int:
        """Releases waiting for Redis to answer again."""
        return len(self._pending)

    async def _flush_pending(self) -> None:
        while self._pending and self.available:
            token, lease = next(iter(self._pending.items()))
            raw = await self._run(
                self._release, self.keys(lease.worker), [_member(lease), lease.work_us]
            )
            if raw is None:
                return
            self._pending.pop(token, None)

    async def snapshot(self, workers: Sequence[str]) -> dict[str, WorkerLoad] | None:
        """Every worker's load, pipelined into one round trip (after any queued releases)."""
        if self._pending:
            await self._flush_pending()
        if not self.available:
            return None
        self.round_trips += 1
        try:
            async with asyncio.timeout(max(self._timeout, 0.2)):
                raws = await self._backend.hmget_many(
                    [self.keys(w)[0] for w in workers], ("out", "work_us")
                )
        except _ERRORS as exc:
            self._fail(exc)
            return None
        self._ok()
        return {w: _load(raw) for w, raw in zip(workers, raws, strict=True)}

    async def expire_leases(self, workers: Sequence[str]) -> int | None:
        """Drop expired leases of every listed worker (one script call per worker)."""
        total = 0
        for w in workers:
            n = await self._run(self._expire, self.keys(w), [])
            if n is None:
                return None
            total += int(n)
        return total


def _member(lease: Lease) -> str:
    return f"{lease.token}:{lease.work_us}"
