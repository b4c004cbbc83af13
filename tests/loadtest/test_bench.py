"""``synergai bench`` between policies, with a fake fleet and fake gateways (no servers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

import loadtest.bench as bench


@dataclass
class FakeGateway:
    inflight: list[int]

    def metrics(self) -> str:
        n = self.inflight.pop(0) if len(self.inflight) > 1 else self.inflight[0]
        return f"# HELP x\nsynergai_inflight_requests {n}.0\nsynergai_other 7\n"


@dataclass
class FakeFleet:
    backlogs: list[dict[str, int]]
    workers: list[Any] = field(default_factory=list)
    slowdowns: dict[str, float] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    injector: Any = None

    def backlog(self) -> dict[str, int]:
        return self.backlogs.pop(0) if len(self.backlogs) > 1 else self.backlogs[0]

    def set_slowdown(self, worker: str, factor: float) -> None:
        self.slowdowns[worker] = factor

    def recover(self, worker: str) -> None:
        self.recovered.append(worker)


@dataclass
class Worker:
    id: str


def test_inflight_sums_every_replica() -> None:
    assert bench._inflight([FakeGateway([3]), FakeGateway([2])]) == 5
    assert bench._inflight([]) == 0


def test_settle_waits_for_queues_and_gateways_then_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped: list[bool] = []
    fleet = FakeFleet(
        [{"pi-0": 4, "orin-0": 0}, {"pi-0": 1, "orin-0": 0}, {"pi-0": 0, "orin-0": 0}],
        workers=[Worker("pi-0"), Worker("orin-0")],
        injector=type("I", (), {"stop": lambda self: stopped.append(True)})(),
    )
    said: list[str] = []
    idle = bench._settle_fleet(fleet, [FakeGateway([2, 1, 0])], said.append, timeout_s=30)
    assert idle.idle and stopped == [True]
    assert fleet.slowdowns == {"pi-0": 1.0, "orin-0": 1.0}
    assert said and said[0].startswith("fleet idle after")
    bench._restart_laggards(fleet, idle, said.append)
    assert fleet.recovered == []


def test_what_is_still_busy_at_the_bound_is_restarted() -> None:
    fleet = FakeFleet([{"pi-0": 9, "orin-0": -1, "nx-0": 0}])
    said: list[str] = []
    idle = bench._settle_fleet(fleet, [FakeGateway([0])], said.append, timeout_s=0.2)
    assert not idle.idle and "not idle" in said[0]
    bench._restart_laggards(fleet, idle, said.append)
    assert sorted(fleet.recovered) == ["orin-0", "pi-0"]
    assert said[-1].startswith("restarting 2 busy or down server(s)")
