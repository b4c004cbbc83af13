"""Added latency of the gateway's gRPC front door over calling Triton directly, beside REST.

One run, one set of servers: a real Triton server with one emulated model that answers at once
(``echo``, 0.01 ms, two instances), a real Valkey, and one ``synergai serve`` replica (its own
process, uvloop, the default policy). Four ways in: {HTTP, gRPC} x {direct, gateway}, each a
closed loop of ``c`` clients (one keep-alive connection / one channel each, the same tiny FP32
[1, 4] tensor; :func:`loadtest.client.closed_loop`, the client ``synergai bench overhead`` uses).

To keep drift (CPU frequency, a noisy neighbour) out of the comparison, every concurrency runs
``--rounds`` rounds and each round visits the four targets in turn; latencies are pooled per
target. Added latency = gateway percentile - direct percentile, per protocol.

Run::

    .venv/bin/python -m loadtest.grpc_overhead                    # table on stdout
    .venv/bin/python -m loadtest.grpc_overhead --json --seconds 3 --rounds 3

``--json`` prints one document: ``{"mode": "grpc_overhead", "rows": [...], "added": [...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.bench_stats import percentile
from loadtest.client import Protocol, closed_loop
from loadtest.overhead import MODEL, write_overhead_config

__all__ = ["CONCURRENCY", "main", "run"]

CONCURRENCY: tuple[int, ...] = (1, 16)
"""Closed-loop client counts."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def run(seconds: float, rounds: int, concurrency: Sequence[int]) -> dict[str, Any]:
    """Start the servers, measure every target, stop everything; the result document."""
    from loadtest.bench_stack import GatewayProcess, Valkey
    from workers.launcher import TritonServer
    from workers.repository import EmulatedModel, ServerSpec

    wd = Path(tempfile.mkdtemp(prefix="synergai-grpc-overhead-"))
    server = TritonServer(
        ServerSpec(name="overhead-0", models=[EmulatedModel.fixed(MODEL, 0.01)], instances=2), wd
    )
    valkey = Valkey()
    gw: GatewayProcess | None = None
    try:
        server.start()
        server.wait_ready(60)
        valkey.start()
        cfg = write_overhead_config(wd, server)
        gw = GatewayProcess(cfg, wd, policy="synergai", redis_url=valkey.url, name="grpc-overhead")
        gw.start()
        gw.wait_ready()
        targets: list[tuple[str, Protocol, str]] = [
            ("direct", "http", server.http_url),
            ("gateway", "http", gw.url),
            ("direct", "grpc", server.grpc_url),
            ("gateway", "grpc", gw.grpc_target),
        ]
        rows: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        for c in concurrency:
            lat: dict[tuple[str, str], list[float]] = {(t, p): [] for t, p, _ in targets}
            errors: dict[tuple[str, str], int] = dict.fromkeys(lat, 0)
            measured: dict[tuple[str, str], float] = dict.fromkeys(lat, 0.0)
            for r in range(rounds):
                for target, proto, url in targets:
                    _say(f"concurrency {c}, round {r + 1}/{rounds}: {target}/{proto}")
                    res = asyncio.run(closed_loop(url, proto, c, seconds, model=MODEL))
                    lat[(target, proto)] += res.latencies_ms
                    errors[(target, proto)] += res.errors
                    measured[(target, proto)] += res.seconds
            for key, values in lat.items():
                rows.append(
                    {
                        "target": key[0],
                        "protocol": key[1],
                        "concurrency": c,
                        "requests": len(values),
                        "errors": errors[key],
                        "rps": round(len(values) / max(measured[key], 1e-9), 1),
                        "p50_ms": _round(percentile(values, 50)),
                        "p99_ms": _round(percentile(values, 99)),
                    }
                )
            for door in ("http", "grpc"):
                d, g = lat[("direct", door)], lat[("gateway", door)]
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
    finally:
        if gw is not None:
            with contextlib.suppress(Exception):
                gw.stop()
        with contextlib.suppress(Exception):
            valkey.stop()
        server.stop()


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
