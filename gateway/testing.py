"""Small fakes behind the gateway's seams, for tests of code that uses them.

The code under test stays the real code (STYLE.md principle 5): :class:`FakeUpstream` stands
in for the network to Triton, :class:`FixedPolicy` for a routing policy; the state seam's fake
is the real in-process :class:`gateway.state.memory_store.MemoryStore`. For tests of a real
``synergai serve`` process, :class:`loadtest.gateway_process.GatewayProcess`; for an in-process
gateway over a test fleet of Triton workers: :func:`fleet_settings`; for a child without some
optional dependencies: :func:`blocking_imports`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.routing.types import Decision, Request, WorkerInfo
from gateway.routing.view import FleetView
from gateway.settings import Settings, WorkerSpec
from gateway.upstream.base import UpstreamResponse

__all__ = [
    "FakeUpstream",
    "FixedPolicy",
    "SentRequest",
    "blocking_imports",
    "fleet_settings",
]


@dataclass(frozen=True)
class SentRequest:
    """What a :class:`FakeUpstream` was asked to send."""

    worker: str
    target: str
    body: bytes | None
    headers: dict[str, str]
    timeout_s: float


@dataclass
class FakeUpstream:
    """Records calls and answers from ``respond`` (default: 200 echoing the body as JSON).

    Attributes:
        respond: ``(worker, target, body) -> UpstreamResponse``, or raise a ``GatewayError``.
        delay_s: simulated service time before answering.
        sent: every call, in order.
    """

    respond: Callable[[WorkerInfo, str, bytes | None], UpstreamResponse] | None = None
    delay_s: float = 0.0
    sent: list[SentRequest] = field(default_factory=list)
    started: bool = False
    closed: bool = False
    fail: dict[str, GatewayError] = field(default_factory=dict)
    """Worker id -> error to raise for it (connection refused, timeout...)."""
    deadlines: list[float | None] = field(default_factory=list)
    """Every deadline a caller bounded its calls by (:meth:`deadline`)."""

    @contextlib.contextmanager
    def deadline(self, at: float | None) -> Iterator[None]:
        """Record ``at`` (a :class:`~gateway.upstream.base.DeadlineUpstream`, as the gRPC one)."""
        self.deadlines.append(at)
        yield

    async def start(self) -> None:
        """Mark started."""
        self.started = True

    async def close(self) -> None:
        """Mark closed."""
        self.closed = True

    async def call(
        self,
        worker: WorkerInfo,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        """Record and answer."""
        self.sent.append(SentRequest(worker.id, target, body, dict(headers), timeout_s))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        err = self.fail.get(worker.id)
        if err is not None:
            raise err
        if self.respond is not None:
            return self.respond(worker, target, body)
        ctype = headers.get("content-type", "application/json")
        return UpstreamResponse.from_http(200, body or b"{}", {"content-type": ctype})


@dataclass
class FixedPolicy:
    """Always answers ``decision`` (or ``pick(req, view)`` when given)."""

    decision: Decision
    name: str = "fixed"
    pick: Callable[[Request, FleetView], Decision] | None = None
    seen: list[Request] = field(default_factory=list)

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """Record ``req``; return the fixed decision."""
        self.seen.append(req)
        return self.pick(req, view) if self.pick is not None else self.decision


def fleet_settings(workers: Sequence[Any], profiles: Path, **overrides: Any) -> Settings:
    """Gateway settings in front of a test fleet: loopback, quiet, no gRPC door by default.

    Args:
        workers: the fleet's worker specs (anything with ``as_config()``, e.g.
            ``workers.fleet.WorkerSpec``).
        profiles: the profiles directory the fleet emulates.
        overrides: any other ``Settings`` field (``policy``, ``port``, ``grpc_port``, ...).
    """
    base: dict[str, Any] = {
        "workers": [WorkerSpec(**w.as_config()) for w in workers],
        "profiles": profiles,
        "host": "127.0.0.1",
        "port": 0,
        "grpc_port": None,
        "log_level": "warning",
    }
    return Settings(**(base | overrides))


def blocking_imports(modules: Sequence[str]) -> str:
    """Python source that makes these top-level modules unimportable, as if not installed.

    Run it first in a child (``python -c``, or as ``sitecustomize.py`` on its ``PYTHONPATH``) to
    check that something works without an optional dependency (``gateway.extras``).
    """
    return (
        "import importlib.abc, sys\n"
        f"_BLOCKED = {sorted(set(modules))!r}\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in _BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
