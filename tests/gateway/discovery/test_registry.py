"""The Redis worker registry against a real (embedded) Valkey: heartbeat, expiry, deregistration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from gateway.discovery.base import DiscoverySync
from gateway.discovery.registry import Registrar, RegistrySource, start_registration
from gateway.embedded import EmbeddedValkey
from gateway.routing.types import WorkerInfo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def valkey() -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey() as v:
        yield v


def _cfg(wid: str) -> dict[str, object]:
    return {"id": wid, "pool": "p", "arch": "a", "url": f"http://{wid}:8000", "models": ["m"],
            "metrics_url": f"http://{wid}:8002/metrics", "instances": 2, "rtt_ms": 1.0}  # fmt: skip


class _Fleet:
    def __init__(self) -> None:
        self.members: dict[str, WorkerInfo] = {}

    def workers(self) -> list[WorkerInfo]:
        return list(self.members.values())

    def add_worker(self, info: WorkerInfo) -> None:
        self.members[info.id] = info

    def remove_worker(self, worker_id: str) -> None:
        del self.members[worker_id]


async def test_register_expire_and_deregister(valkey: EmbeddedValkey) -> None:
    src = RegistrySource(valkey.url, prefix="reg1")
    fleet = _Fleet()
    sync = DiscoverySync([src], fleet)
    assert await src.workers() == []
    alive = Registrar(valkey.url, [_cfg("w0")], ttl_s=1.0, prefix="reg1").start()
    dying = Registrar(valkey.url, [_cfg("w1")], ttl_s=1.0, prefix="reg1")
    dying.heartbeat()  # registered once, then its launcher "dies": no more heartbeats
    await sync.tick()
    assert set(fleet.members) == {"w0", "w1"}
    assert fleet.members["w0"].instances == 2 and fleet.members["w0"].rtt_ms == 1.0
    deadline = time.monotonic() + 5.0
    while "w1" in fleet.members and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        await sync.tick()
    assert set(fleet.members) == {"w0"}  # expired within the TTL (+ a tick), w0 kept alive
    assert alive.heartbeats >= 2
    alive.stop()  # clean stop: gone at once
    await sync.tick()
    assert fleet.members == {}
    dying.stop(deregister=False)
    await sync.close()


async def test_unreachable_registry_answers_none() -> None:
    from gateway.core.net import free_port

    src = RegistrySource(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    assert await src.workers() is None
    await src.close()
    reg = Registrar(f"redis://127.0.0.1:{free_port()}/0", [_cfg("x")])
    assert reg.heartbeat() is False
    reg.stop()


def test_start_registration_only_with_a_registry(valkey: EmbeddedValkey) -> None:
    assert start_registration([_cfg("x")], {}) is None
    reg = start_registration([_cfg("x")], {"REDIS_URL": valkey.url, "SYNERGAI_REDIS_PREFIX": "r3"})
    assert reg is not None and reg.heartbeats == 1
    reg.stop()
    with pytest.raises(KeyError):
        Registrar(valkey.url, [{"id": "bad"}])
