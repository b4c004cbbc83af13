"""Per-request outcome fingerprints: ``python -m loadtest.sim.fingerprint SCENARIO... [opts]``.

Options: ``--policy P`` (repeatable; default every policy, ``oracle`` included),
``--until S`` (only the arrivals before ``S`` seconds), ``--seed N``. Prints one JSON
document ``{scenario: {policy: fingerprint}}`` where a fingerprint is the SHA-256 (16 hex
digits) of every request's status, chosen worker and exact latency bits. Two trees (or the
compiled and the pure-Python modules, ``SYNERGAI_NATIVE=0``) simulate identically exactly
when their fingerprints are equal: this is how a speed-up shows it changed no result.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway.routing.registry import make_policy, policy_names
from gateway.scenario import load_scenario
from loadtest.sim.engine import SimResult, simulate
from loadtest.sim.trace import build_trace

__all__ = ["fingerprint", "fingerprints", "main"]


def fingerprint(res: SimResult) -> str:
    """SHA-256 (16 hex digits) of status, worker and latency (exact float bits)."""
    h = hashlib.sha256()
    for a in (res.status.astype(np.int64), res.worker.astype(np.int64), res.latency_ms):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def fingerprints(
    path: Path, policies: Sequence[str], until: float | None = None, seed: int | None = None
) -> dict[str, str]:
    """``{policy: fingerprint}`` of one scenario file (arrivals before ``until`` only)."""
    sc = load_scenario(path).scaled()
    seed = sc.seed if seed is None else seed
    trace = build_trace(sc, seed)
    if until is not None:
        trace = trace.keep(trace.t < until)
    return {
        p: fingerprint(simulate(sc, trace, make_policy(p, sc.profile_book, seed), seed))
        for p in policies
    }


def main(argv: Sequence[str]) -> int:
    """Print the fingerprints; exit status."""
    files: list[str] = []
    policies: list[str] = []
    until: float | None = None
    seed: int | None = None
    it = iter(argv)
    for a in it:
        if a == "--policy":
            policies.append(next(it))
        elif a == "--until":
            until = float(next(it))
        elif a == "--seed":
            seed = int(next(it))
        else:
            files.append(a)
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    names = policies or policy_names(include_sim_only=True)
    doc = {Path(f).stem: fingerprints(Path(f), names, until, seed) for f in files}
    print(json.dumps(doc, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
