"""The Redis (Valkey) :class:`~gateway.state.store.StateStore`: atomic, leased, fail-open.

Key layout (also in docs/architecture.md); ``{id}`` is a Redis Cluster hash tag, so the keys of
a worker live in one slot and each script touches one slot::

    <prefix>:w:{<worker>}   hash  out      requests in flight, all gateways (integer >= 0)
                                  work_us  predicted outstanding work, microseconds (>= 0)
                                  f<i>     slot i's predicted free time (µs, server TIME)
                                  s<i>     slot i's shift (total re-anchoring, µs)
    <prefix>:l:{<worker>}   zset  member <gateway>:<seq>:<work_us>, score = lease expiry (ms,
                                  Redis server clock)
    <prefix>:p:{<worker>}   hash  <gateway>:<seq> -> <slot>:<predicted end - shift> (the
                                  placement of a live lease, for its release)

Invariants: ``out`` equals the number of live lease members and ``work_us`` their sum, because
a counter moves only when a lease member is added (``ZADD NX``) or removed (``ZREM`` answered 1).
Releasing an expired or unknown lease therefore changes nothing, and the counts never go
negative, also after a Redis restart that lost the data. Using the server's ``TIME`` for lease
expiry keeps gateway clocks out of it.

Transport: for ``redis://`` and ``unix://`` URLs, :class:`gateway.state.resp.RespClient`, one
pipelined connection (a script call costs ~80 µs of CPU against ~310 µs with redis-py on the
CI VM, and there are two per request); the other forms (``rediss://``, ``redis+sentinel://``,
``redis+cluster://``: :mod:`gateway.state.redis_url`) use redis-py, one node with a bounded pool
in which a call waits for a free connection up to the timeout. Scripts run with
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
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from gateway.core.clock import Clock
from gateway.state.redis_url import redis_client
from gateway.state.resp import RespClient, RespError, encode_bulks, supports
from gateway.state.store import Ended, Lease, WorkerLoad

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

_QUEUE = """
local function fmt(x) return string.format('%.0f', x) end
local function queue(key, k, now)
  local names = {'out', 'work_us'}
  for i = 0, k - 1 do names[#names + 1] = 'f' .. i end
  local v = redis.call('HMGET', key, unpack(names))
  local r = {tonumber(v[1]) or 0, tonumber(v[2]) or 0}
  for i = 3, #v do
    local left = (tonumber(v[i]) or 0) - now
    r[i] = left > 0 and left or 0
  end
  return r
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local k = tonumber(ARGV[4])
"""
"""Shared head of the scripts: ``now`` (µs, the server's clock), ``k`` (slots), and ``queue``:
the reply ``{out, work_us, left_0 .. left_k-1}`` with each slot's time left (µs, >= 0)."""

_RESERVE = (
    _QUEUE
    + """
local limit = tonumber(ARGV[7]) or -1
if limit >= 0 and redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then
  local names = {}
  for i = 0, k - 1 do names[#names + 1] = 'f' .. i end
  local v = redis.call('HMGET', KEYS[1], unpack(names))
  local first = nil
  for i = 1, k do
    local f = tonumber(v[i]) or 0
    if first == nil or f < first then first = f end
  end
  if first - (now + tonumber(ARGV[5])) > limit then
    local r = queue(KEYS[1], k, now)
    r[#r + 1] = 0
    return r
  end
end
if redis.call('ZADD', KEYS[2], 'NX', math.floor(now / 1000) + tonumber(ARGV[3]), ARGV[1]) == 1 then
  local work = tonumber(ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'out', 1)
  redis.call('HINCRBY', KEYS[1], 'work_us', work)
  local names = {}
  for i = 0, k - 1 do names[#names + 1] = 'f' .. i; names[#names + 1] = 's' .. i end
  local v = redis.call('HMGET', KEYS[1], unpack(names))
  local bi, best = 0, nil
  for i = 0, k - 1 do
    local f = tonumber(v[2 * i + 1]) or 0
    if best == nil or f < best then bi, best = i, f end
  end
  local arrive = now + tonumber(ARGV[5])
  local fin = (arrive > best and arrive or best) + work
  redis.call('HSET', KEYS[1], 'f' .. bi, fmt(fin))
  local shift = tonumber(v[2 * bi + 2]) or 0
  redis.call('HSET', KEYS[3], ARGV[6], bi .. ':' .. fmt(fin - shift))
end
return queue(KEYS[1], k, now)
"""
)
"""ARGV: member, work_us, ttl_ms, slots, lead_us, token, max_wait_us. The request joins the slot
that frees first, from ``now + lead_us`` (its arrival), for ``work_us``: the local shadow queue's
rule (:meth:`gateway.routing.view.FleetView.start_state`) on the shared queue. Its slot and
predicted end (less the slot's shift so far) are kept under its token for the release. With
``max_wait_us`` >= 0 (a conditional reserve) a request that would wait longer books nothing, and
the reply carries one more element (0) after the slots."""

_RELEASE = (
    _QUEUE
    + """
local function drop(key, work)
  local out = redis.call('HINCRBY', key, 'out', -1)
  local w = redis.call('HINCRBY', key, 'work_us', -work)
  if out <= 0 then
    redis.call('HSET', key, 'out', 0, 'work_us', 0)
  elseif w < 0 then
    redis.call('HSET', key, 'work_us', 0)
  end
end
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  local work = tonumber(ARGV[2])
  drop(KEYS[1], work)
  local placed = redis.call('HGET', KEYS[3], ARGV[6])
  local mode = tonumber(ARGV[5])
  if placed then
    redis.call('HDEL', KEYS[3], ARGV[6])
    local si, sp = string.match(placed, '^(%d+):(%-?%d+)$')
    local i = tonumber(si)
    if i and i < k and mode ~= 0 then
      local v = redis.call('HMGET', KEYS[1], 'f' .. i, 's' .. i)
      local f, shift = tonumber(v[1]) or 0, tonumber(v[2]) or 0
      local pend = tonumber(sp) + shift
      if mode == 1 and f >= pend then
        local te = now - tonumber(ARGV[7])
        local g = f + te - pend
        g = g > te and g or te
        redis.call('HSET', KEYS[1], 'f' .. i, fmt(g), 's' .. i, fmt(shift + g - f))
      elseif mode == 2 and f == pend then
        local b = pend - work
        redis.call('HSET', KEYS[1], 'f' .. i, fmt(b > now and b or now))
      end
    end
  end
end
return queue(KEYS[1], k, now)
"""
)
"""ARGV: member, work_us, _, slots, mode, token, ago_us. ``mode`` 1 (success): the request
truly ended ``ago_us`` before now; while its slot's chain still holds it, the chain moves by its
error (never earlier than the true end) and the slot's shift records the move. 2 (abandoned): a
request still last on its slot hands the slot back from its begin. 0 (failed): as predicted.
The same rules as :meth:`gateway.routing.view.FleetView.finish_state` on the local chain."""

_SNAPSHOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HGETALL', KEYS[1])
local r, n = {0, 0}, 2
for i = 1, #h, 2 do
  local k, v = h[i], tonumber(h[i + 1]) or 0
  if k == 'out' then r[1] = v elseif k == 'work_us' then r[2] = v
  else
    local s = string.match(k, '^f(%d+)$')
    if s then
      local j = tonumber(s) + 3
      r[j] = v > now and v - now or 0
      if j > n then n = j end
    end
  end
end
for j = 3, n do r[j] = r[j] or 0 end
return r
"""
"""A snapshot of one worker, relative to the clock of the node that holds it (Cluster):
the reply of :data:`_QUEUE`'s ``queue`` for every slot ever booked."""

_EXPIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(dead) do
  if redis.call('ZREM', KEYS[2], m) == 1 then
    local token, us = string.match(m, '^(.*):(%d+)$')
    local out = redis.call('HINCRBY', KEYS[1], 'out', -1)
    local work = redis.call('HINCRBY', KEYS[1], 'work_us', -(tonumber(us) or 0))
    if token then redis.call('HDEL', KEYS[3], token) end
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
        self,
        script: _Script,
        keys: Sequence[str],
        args: Sequence[Any],
        defer: bool = False,
        timeout_s: float = 0.05,
    ) -> Any: ...  # TimeoutError once timeout_s has passed
    async def read_many(self, keys: Sequence[str]) -> tuple[Any, list[Any]]: ...
    async def ping(self) -> Any: ...
    async def close(self) -> None: ...


class _RespBackend:
    def __init__(self, url: str, connect_timeout_s: float) -> None:
        self._c = RespClient(url, connect_timeout_s)
        self._heads: dict[tuple[str, tuple[str, ...], int], bytes] = {}

    def _head(self, script: _Script, keys: Sequence[str], nargs: int) -> bytes:
        """``EVALSHA sha numkeys keys...`` encoded, with the array header for ``nargs`` more.

        Kept per script, keys and argument count: the same few per worker, and encoding them
        was half the cost of encoding a reserve or a release.
        """
        key = (script.sha, keys if type(keys) is tuple else tuple(keys), nargs)
        head = self._heads.get(key)
        if head is None:
            head = b"*%d\r\n" % (3 + len(keys) + nargs) + encode_bulks(
                ["EVALSHA", script.sha, len(keys), *keys]
            )
            if len(self._heads) < 10_000:
                self._heads[key] = head
        return head

    async def eval(
        self,
        script: _Script,
        keys: Sequence[str],
        args: Sequence[Any],
        defer: bool = False,
        timeout_s: float = 0.05,
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s  # both calls, as one timeout
        c = self._c
        command = self._head(script, keys, len(args)) + encode_bulks(args)
        try:
            return await c.call_encoded(command, defer=defer, deadline=deadline)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await c.call("EVAL", script.text, len(keys), *keys, *args, deadline=deadline)

    async def read_many(self, keys: Sequence[str]) -> tuple[Any, list[Any]]:
        got = await self._c.pipeline([["TIME"], *(["HGETALL", k] for k in keys)])
        return got[0], got[1:]

    async def ping(self) -> Any:
        return await self._c.call("PING")

    async def close(self) -> None:
        await self._c.close()


class _RedisPyBackend:
    def __init__(self, client: aioredis.Redis | RedisCluster) -> None:
        self._c = client

    async def eval(
        self,
        script: _Script,
        keys: Sequence[str],
        args: Sequence[Any],
        defer: bool = False,
        timeout_s: float = 0.05,
    ) -> Any:
        async with asyncio.timeout(timeout_s):
            try:
                return await self._c.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
            except NoScriptError:
                return await self._c.eval(script.text, len(keys), *keys, *args)  # type: ignore[no-untyped-call]

    async def read_many(self, keys: Sequence[str]) -> tuple[Any, list[Any]]:
        if isinstance(self._c, RedisCluster):
            # TIME has no key, and each node has its own clock: each worker's queue is read
            # relative to the clock of the node that holds it (one script per key, pipelined
            # per node by redis-py); ``None`` tells the caller the replies are relative
            async with self._c.pipeline(transaction=False) as cpipe:
                for k in keys:
                    cpipe.eval(_SNAPSHOT, 1, k)  # type: ignore[no-untyped-call]
                return None, list(await cpipe.execute())
        async with self._c.pipeline(transaction=False) as pipe:
            pipe.time()
            for k in keys:
                pipe.hgetall(k)
            got = list(await pipe.execute())
        return got[0], got[1:]

    async def ping(self) -> Any:
        return await self._c.ping()

    async def close(self) -> None:
        return None  # the store closes the shared client


_ERRORS = (RedisError, RespError, OSError, TimeoutError)
"""What a failed call raises (ConnectionError is an OSError)."""


def _load(raw: Sequence[Any]) -> WorkerLoad:
    """A script's reply ``[out, work_us, left_0 .. left_k-1]`` (µs) as a :class:`WorkerLoad`."""
    out, work = raw[0], raw[1]
    return WorkerLoad(
        int(out or 0), int(work or 0) / 1000.0, tuple(int(x) / 1000.0 for x in raw[2:])
    )


def _server_us(t: Any) -> int:
    """``TIME``'s reply (RESP: ``[sec, usec]``; redis-py: ``(sec, usec)``) in µs."""
    return int(t[0]) * 1_000_000 + int(t[1])


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _snap_load(raw: Any, now_us: int) -> WorkerLoad:
    """An ``HGETALL`` of a worker hash (RESP: flat list; redis-py: dict) as of ``now_us``."""
    if isinstance(raw, dict):
        h = {_text(k): _text(v) for k, v in raw.items()}
    else:
        h = {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw or ()), 2)}
    slots = [int(k[1:]) for k in h if k[:1] == "f" and k[1:].isdigit()]
    free = [0.0] * (max(slots) + 1 if slots else 0)  # a slot never booked is free
    for i in slots:
        left = int(float(h[f"f{i}"])) - now_us
        free[i] = left / 1000.0 if left > 0 else 0.0
    return WorkerLoad(int(h.get("out", 0)), int(h.get("work_us", 0)) / 1000.0, tuple(free))


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
        # redis-py: for ops, tests, and the URL forms the RESP client does not handle (TLS,
        # Sentinel, Cluster: gateway.state.redis_url, which rejects any other form).
        self._client = redis_client(url, timeout_s, max_connections)
        self._backend: _Backend = (
            _RespBackend(url, max(timeout_s, 0.2))
            if supports(url)
            else _RedisPyBackend(self._client)
        )
        self._clock = clock
        self._prefix = prefix
        self._keys: dict[str, tuple[str, str, str]] = {}
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
    def client(self) -> aioredis.Redis | RedisCluster:
        """A redis-py client on the same server (ops and tests; not the hot path)."""
        return self._client

    def keys(self, worker: str) -> tuple[str, str, str]:
        """``(load hash, lease zset, placement hash)`` keys of ``worker`` (one hash slot)."""
        found = self._keys.get(worker)
        if found is None:
            tag = f"{{{worker}}}"
            p = self._prefix
            found = f"{p}:w:{tag}", f"{p}:l:{tag}", f"{p}:p:{tag}"
            if len(self._keys) < 10_000:  # kept: two calls per request
                self._keys[worker] = found
        return found

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
        if isinstance(self._client, RedisCluster):
            await self._client.aclose()
        else:
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
        try:  # the backend applies the timeout (the RESP client's is cheaper)
            result = await self._backend.eval(script, keys, args, defer, self._timeout)
        except _ERRORS as exc:
            self._fail(exc)
            return None
        self._ok()
        return result

    async def reserve(self, lease: Lease) -> WorkerLoad | None:
        """Atomically add the lease and its work; post-op fleet-wide load, or ``None``."""
        args = [
            _member(lease),
            lease.work_us,
            self._ttl_ms,
            lease.slots,
            lease.lead_us,
            lease.token,
            lease.max_wait_us,
        ]
        raw = await self._run(self._reserve, self.keys(lease.worker), args)
        if raw is None:
            return None
        if len(raw) > 2 + lease.slots:  # a conditional reserve that booked nothing
            return replace(_load(raw[: 2 + lease.slots]), booked=False)
        return _load(raw)

    async def release(self, lease: Lease, ended: Ended | None = None) -> WorkerLoad | None:
        """Atomically drop the lease and its work if still held; post-op load, or ``None``.

        ``ended`` re-anchors the shared queue (see ``_RELEASE``). On failure the lease is
        queued and released again (without re-anchoring) before the next snapshot.
        """
        raw = await self._run(
            self._release, self.keys(lease.worker), _release_args(lease, ended), defer=True
        )
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
                self._release, self.keys(lease.worker), _release_args(lease, None)
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
                t, raws = await self._backend.read_many([self.keys(w)[0] for w in workers])
        except _ERRORS as exc:
            self._fail(exc)
            return None
        self._ok()
        if t is None:  # already relative (Cluster)
            return {w: _load(raw) for w, raw in zip(workers, raws, strict=True)}
        now_us = _server_us(t)
        return {w: _snap_load(raw, now_us) for w, raw in zip(workers, raws, strict=True)}

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


def _release_args(lease: Lease, ended: Ended | None) -> list[Any]:
    if ended is None or (ended.ago_us is None and not ended.abandoned):
        mode, ago = 0, 0
    elif ended.abandoned:
        mode, ago = 2, 0
    else:
        mode, ago = 1, max(0, ended.ago_us or 0)
    return [_member(lease), lease.work_us, 0, lease.slots, mode, lease.token, ago]
