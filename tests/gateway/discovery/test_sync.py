"""DiscoverySync: union of sources, add / replace / remove, a failing source keeps its last list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from gateway.discovery.base import DiscoverySync, StaticSource, worker_from_dict
from gateway.discovery.build import make_sources, pool_templates
from gateway.discovery.config import DiscoverySettings, PoolTemplate
from gateway.routing.types import WorkerInfo


def _w(wid: str, url: str = "http://h:1", pool: str = "p") -> WorkerInfo:
    return WorkerInfo(wid, pool, "a", ("m",), url=url)


@dataclass
class _Source:
    name: str
    answer: Sequence[WorkerInfo] | Exception | None = None
    closed: bool = False

    async def workers(self) -> Sequence[WorkerInfo] | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def close(self) -> None:
        self.closed = True


@dataclass
class _Fleet:
    members: dict[str, WorkerInfo] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def workers(self) -> Sequence[WorkerInfo]:
        return list(self.members.values())

    def add_worker(self, info: WorkerInfo) -> None:
        self.members[info.id] = info
        self.log.append(f"+{info.id}")

    def remove_worker(self, worker_id: str) -> None:
        del self.members[worker_id]
        self.log.append(f"-{worker_id}")


async def test_union_add_replace_remove() -> None:
    fleet = _Fleet({"s0": _w("s0")})
    reg = _Source("redis", [_w("r0"), _w("s0", "http://other:1")])
    sync = DiscoverySync([StaticSource([_w("s0")]), reg], fleet)
    await sync.tick()
    assert fleet.log == ["+r0"]  # s0: the static source comes first and wins
    reg.answer = [_w("r0", "http://moved:1")]
    await sync.tick()
    assert fleet.log == ["+r0", "+r0"] and fleet.members["r0"].url == "http://moved:1"
    reg.answer = []
    await sync.tick()
    assert fleet.log[-1] == "-r0" and set(fleet.members) == {"s0"}
    assert sync.changes == 3
    await sync.close()
    assert reg.closed


@pytest.mark.parametrize("failure", [None, RuntimeError("api down")])
async def test_a_failing_source_keeps_its_last_answer(failure: Exception | None) -> None:
    fleet = _Fleet({"cfg": _w("cfg")})
    k8s = _Source("kubernetes", failure)
    sync = DiscoverySync([k8s], fleet)
    await sync.tick()
    assert set(fleet.members) == {"cfg"}  # never answered: the configured fleet stays
    k8s.answer = [_w("pod-1")]
    await sync.tick()
    assert set(fleet.members) == {"pod-1"}
    k8s.answer = failure
    await sync.tick()
    assert set(fleet.members) == {"pod-1"}


def test_worker_from_dict() -> None:
    w = worker_from_dict(
        {"id": "x", "pool": "p", "arch": "a", "url": "http://h:1/", "models": ["m"], "instances": 2}
    )
    assert w.url == "http://h:1" and w.instances == 2 and w.models == ("m",)
    for bad in ({"id": "x"}, {"id": "x", "pool": "p", "arch": "a", "url": "u", "models": "m"}):
        with pytest.raises((KeyError, ValueError)):
            worker_from_dict(bad)


def test_templates_and_sources_from_settings() -> None:
    cfg = DiscoverySettings.model_validate(
        {"sources": ["kubernetes", "static"], "kubernetes": {"pools": {"q": {"models": ["z"]}}}}
    )
    static = [WorkerInfo("p", "p", "a", ("m",), instances=8, rtt_ms=2.0)]
    t = pool_templates(cfg, static)
    assert t == {"p": PoolTemplate(models=["m"], rtt_ms=2.0), "q": PoolTemplate(models=["z"])}
    assert [s.name for s in make_sources(cfg, static, None, "x", {})] == ["kubernetes", "static"]
    assert DiscoverySettings().dynamic is False and cfg.dynamic
    with pytest.raises(ValueError, match="registry_url"):
        make_sources(DiscoverySettings(sources=["redis"]), static, None, "x", {})
