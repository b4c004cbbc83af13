"""Added latency of the gateway's gRPC front door over calling Triton directly, beside REST.

One run, one set of servers: a real Triton server with one emulated model that answers at once
(``echo``, 0.01 ms, two instances), a real Valkey, and one ``synergai serve`` replica (its own
process, uvloop, the default policy). Four ways in: {HTTP, gRPC} x {direct, gateway}, each a
closed loop of ``c`` clients (one keep-alive connection / one channel each, the same tiny FP32
[1, 4] tensor; :func:`loadtest.loops.closed_loop`, the client ``synergai bench overhead`` uses).

To keep drift (CPU frequency, a noisy neighbour) out of the comparison, every concurrency runs
``--rounds`` rounds and each round visits the four targets in turn; latencies are pooled per
target (:func:`loadtest.loops.interleaved`). Added latency = gateway percentile - direct
percentile, per protocol.

Run::

    .venv/bin/python -m loadtest.grpc_overhead                    # table on stdout
    .venv/bin/python -m loadtest.grpc_overhead --json --seconds 3 --rounds 3

``--json`` prints one document: ``{"mode": "grpc_overhead", "rows": [...], "added": [...]}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.bench_stats import percentile
from loadtest.client import Protocol
from loadtest.gateway_process import GatewayProcess
from loadtest.loops import interleaved
from loadtest.overhead_rig import MODEL, echo_rig

__all__ = ["CONCURRENCY", "main", "run"]

CONCURRENCY: tuple[int, ...] = (1, 16)
"""Closed-loop client counts."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def run(seconds: float, rounds: int, concurrency: Sequence[int]) -> dict[str, Any]:
    """Start the servers, measure every target, stop everything; the result document."""
    wd = Path(tempfile.mkdtemp(prefix="synergai-grpc-overhead-"))
    try:
        with contextlib.ExitStack() as stack:
            server, valkey, cfg = stack.enter_context(echo_rig(wd))
            gw = stack.enter_context(
                GatewayProcess(
                    cfg, wd, policy="synergai", redis_url=valkey.url, name="grpc-overhead"
                )
            )
            return _measure(server, gw, seconds, rounds, concurrency)
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def _measure(
    server: Any, gw: GatewayProcess, seconds: float, rounds: int, concurrency: Sequence[int]
) -> dict[str, Any]:
    """Rounds over the four targets at each concurrency; the result document."""
    targets: list[tuple[tuple[str, str], Protocol, str]] = [
        (("direct", "http"), "http", server.http_url),
        (("gateway", "http"), "http", gw.url),
        (("direct", "grpc"), "grpc", server.grpc_url),
        (("gateway", "grpc"), "grpc", gw.grpc_target),
    ]
    rows: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    for c in concurrency:
        pooled = interleaved(targets, c, seconds, rounds, model=MODEL, say=_say)
        for (target, proto), res in pooled.items():
            values = res.latencies_ms
            rows.append(
                {
                    "target": target,
                    "protocol": proto,
                    "concurrency": c,
                    "requests": len(values),
                    "errors": res.errors,
                    "rps": round(len(values) / max(res.seconds, 1e-9), 1),
                    "p50_ms": _round(percentile(values, 50)),
                    "p99_ms": _round(percentile(values, 99)),
                }
            )
        for door in ("http", "grpc"):
            d = pooled[("direct", door)].latencies_ms
            g = pooled[("gateway", door)].latencies_ms
            p50 = (percentile(g, 50) or 0.0) - (percentile(d, 50) or 0.0)
            p99 = (percentile(g, 99) or 0.0) - (percentile(d, 99) or 0.0)
            added.append(
                {
                    "protocol": door,
                    "concurrency": c,
                    "added_p50_ms": round(p50, 3),
                    "added_p99_ms": round(p99, 3),
                }
            )
    return {
        "mode": "grpc_overhead",
        "seconds_per_run": seconds,
        "rounds": rounds,
        "rows": rows,
        "added": added,
    }


def _table(doc: dict[str, Any]) -> str:
    lines = [
        f"{'target':8} {'proto':5} {'c':>3} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    ]
    for r in doc["rows"]:
        lines.append(
            f"{r['target']:8} {r['protocol']:5} {r['concurrency']:>3} {r['rps']:>8.1f} "
            f"{r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['errors']:>6}"
        )
    lines.append("")
    lines.append(f"{'added by the gateway':22} {'c':>3} {'p50 ms':>8} {'p99 ms':>8}")
    for a in doc["added"]:
        lines.append(
            f"{a['protocol']:22} {a['concurrency']:>3} {a['added_p50_ms']:>8.3f} "
            f"{a['added_p99_ms']:>8.3f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the four targets")
    ap.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = ap.parse_args(argv)
    doc = run(args.seconds, args.rounds, args.concurrency)
    print(json.dumps(doc, indent=2) if args.json else _table(doc))
    return 0 if all(r["errors"] == 0 for r in doc["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
