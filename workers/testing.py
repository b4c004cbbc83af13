"""Helpers for tests that need a real emulated fleet (used by ``tests/integration/conftest.py``).

* :func:`write_scenario` writes a small scenario with its own profiles directory, so a test
  controls every latency (deterministic profiles: ``p50 == p99``);
* :class:`FleetFactory` starts fleets on demand and stops them all at teardown, asserting that
  no process it started is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from workers import reaper
from workers.fleet import Fleet, WorkerSpec

__all__ = ["FleetFactory", "write_scenario"]


def write_scenario(
    directory: Path,
    pools: Sequence[Mapping[str, Any]],
    profiles: Mapping[tuple[str, str], Mapping[int, tuple[float, float]]],
    *,
    name: str = "test",
    faults: Sequence[Mapping[str, Any]] = (),
    workload: Sequence[Mapping[str, Any]] | None = None,
    max_batch: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``directory/scenario.yaml`` and ``directory/profiles/<arch>/<model>.yaml``.

    Args:
        directory: where to write.
        pools: the scenario's ``pools`` entries (``name``, ``arch``, ``models``, ...).
        profiles: ``{(arch, model): {batch: (p50_ms, p99_ms)}}``.
        name: scenario name.
        faults: the scenario's ``faults`` entries.
        workload: ``workload`` entries (default: 1 rps of each pool model, SLO 1 s).
        max_batch: every profile's ``max_batch`` (default: its largest listed batch).
        extra: more top-level keys (``time_scale``, ``seed``, ...).

    Returns:
        The scenario path.
    """
    prof_dir = directory / "profiles"
    for (arch, model), table in profiles.items():
        path = prof_dir / arch / f"{model}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "arch": arch,
            "model": model,
            "engine": "emulated",
            "source": "test fixture",
            "max_batch": max_batch or max(table),
            "latency_ms": {b: {"p50": p50, "p99": p99} for b, (p50, p99) in table.items()},
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    models = sorted({m for p in pools for m in p["models"]})
    scenario: dict[str, Any] = {
        "name": name,
        "duration_s": 10,
        "seed": 1,
        "profiles": "profiles",
        "pools": [dict(p) for p in pools],
        "workload": list(workload)
        if workload is not None
        else [{"model": m, "rate_rps": 1, "slo_ms": 1000} for m in models],
    }
    if faults:
        scenario["faults"] = [dict(f) for f in faults]
    scenario.update(extra or {})
    path = directory / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    return path


class FleetFactory:
    """Start fleets on demand; :meth:`close` stops them and checks nothing is left running.

    Call it with a scenario (path or loaded ``Scenario``) and optional ``Fleet`` keyword
    arguments; it returns the workers. ``fleets`` holds the :class:`Fleet` objects (for crash
    or slowdown tests), the last one started last.
    """

    def __init__(self) -> None:
        self.fleets: list[Fleet] = []
        self._pids: set[int] = set()

    def __call__(self, scenario: Any, **kwargs: Any) -> list[WorkerSpec]:
        """Start a fleet of ``scenario`` (``Fleet`` keyword arguments pass through)."""
        fleet = Fleet(scenario, **kwargs)
        self.fleets.append(fleet)
        workers = fleet.start()
        self._pids.update(fleet.pids())
        return workers

    @property
    def last(self) -> Fleet:
        """The fleet started last."""
        return self.fleets[-1]

    def close(self) -> list[int]:
        """Stop every fleet; return the PIDs of ours still running (should be empty)."""
        for fleet in self.fleets:
            self._pids.update(fleet.pids())
        for fleet in reversed(self.fleets):
            fleet.stop()
        self.fleets.clear()
        left = [pid for pid in sorted(self._pids) if not reaper.is_gone(pid)]
        self._pids.clear()
        return left
