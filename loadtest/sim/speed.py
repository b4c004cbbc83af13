"""Simulator speed: ``python -m loadtest.sim.speed SCENARIO POLICY...``.

For each policy, simulated requests per second of wall time of the simulate loop (as
``synergai simulate`` prints it) and the process CPU seconds; with ``--split``, the loop
again with the policy's recorded decisions replayed, so the cost of the engine plus the
view's bookkeeping (µs CPU per request) is told apart from the policy's decisions. The
machine may be shared: compare CPU seconds and ratios, and note the load average printed.
The first line says whether the compiled modules run (:mod:`gateway.native`; set
``SYNERGAI_NATIVE=0`` in the environment for the pure-Python figures).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from gateway.native import status
from gateway.routing.registry import make_policy
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView
from gateway.scenario import load_scenario
from loadtest.sim.engine import simulate
from loadtest.sim.trace import build_trace

__all__ = ["main"]


class _Recorder:
    def __init__(self, inner: Any) -> None:
        self.name = inner.name
        self.inner = inner
        self.decisions: list[Decision] = []

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        d: Decision = self.inner.choose(req, view, now, rng)
        self.decisions.append(d)
        return d


class _Replay:
    def __init__(self, name: str, decisions: list[Decision]) -> None:
        self.name = name
        self._it = iter(decisions)

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        return next(self._it)


def main(argv: list[str]) -> int:
    """Print one line per policy; exit status."""
    split = "--split" in argv
    args = [a for a in argv if a != "--split"]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    sc = load_scenario(Path(args[0])).scaled()
    trace = build_trace(sc, sc.seed)
    n = len(trace)
    st = status()
    print(f"native: {'on' if st['active'] else 'off'} ({st['reason']})", flush=True)
    for name in args[1:]:
        c0 = time.process_time()
        res = simulate(sc, trace, make_policy(name, sc.profile_book, sc.seed), sc.seed,
                       clock_ns=time.perf_counter_ns)  # fmt: skip
        cpu = time.process_time() - c0
        line = (
            f"{sc.name} {name}: {n} requests, {n / res.wall_s:,.0f} req/s wall, "
            f"{cpu:.2f} s CPU ({1e6 * cpu / n:.1f} µs/request)"
        )
        if split:
            rec = _Recorder(make_policy(name, sc.profile_book, sc.seed))
            simulate(sc, trace, rec, sc.seed)
            c0 = time.process_time()
            simulate(sc, trace, _Replay(name, rec.decisions), sc.seed)
            bare = 1e6 * (time.process_time() - c0) / n
            line += f"; engine + view {bare:.1f} µs/request, policy {1e6 * cpu / n - bare:.1f}"
        print(f"{line}; load {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
