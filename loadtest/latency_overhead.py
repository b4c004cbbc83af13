"""Added latency of the gateway over calling Triton directly, per REST upstream, one run.

What it starts: the overhead rig (:func:`loadtest.overhead_rig.echo_rig`: one real Triton
server with a ~0 ms emulated model, an embedded Valkey) and one gateway process per REST
upstream (``SYNERGAI_UPSTREAM``: ``aiohttp``, ``http1``). What it measures:
closed-loop KServe v2 JSON infer calls (``INPUT0`` FP32 [1, 4]) from ``c`` concurrent clients
(:func:`loadtest.loops.closed_loop`), first straight to Triton, then through each gateway, in the
same run; added latency = gateway percentile - direct percentile. The gateway's CPU time per
request counts the warm-up requests too (its CPU is read around the whole run).

Run::

    .venv/bin/python loadtest/latency_overhead.py                    # table
    .venv/bin/python -m loadtest.latency_overhead --json --seconds 5 --upstream http1

Target (issue 4): added p50 <= 1 ms at concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.bench_stats import percentile
from loadtest.gateway_process import GatewayProcess
from loadtest.loops import ClosedLoopResult, closed_loop
from loadtest.overhead_rig import MODEL, echo_rig

__all__ = ["main", "run"]


def _fields(res: ClosedLoopResult) -> dict[str, Any]:
    lat = res.latencies_ms
    return {
        "requests": len(lat),
        "warm_requests": res.warm,
        "errors": res.errors,
        "rps": round(res.rps, 1),
        "p50_ms": round(percentile(lat, 50) or 0.0, 3),
        "p99_ms": round(percentile(lat, 99) or 0.0, 3),
    }


def run(seconds: float, concurrencies: Sequence[int], upstreams: Sequence[str]) -> dict[str, Any]:
    """Start everything, measure, stop everything; the result document."""
    rows: list[dict[str, Any]] = []
    wd = Path(tempfile.mkdtemp(prefix="synergai-overhead-"))
    try:
        with contextlib.ExitStack() as stack:
            server, valkey, cfg = stack.enter_context(echo_rig(wd))
            gateways = {
                up: stack.enter_context(
                    GatewayProcess(
                        cfg,
                        wd,
                        policy="least_outstanding",
                        redis_url=valkey.url,
                        name=up,
                        env={"SYNERGAI_UPSTREAM": up},
                    )
                )
                for up in upstreams
            }
            for c in concurrencies:
                targets = [("direct", server.http_url, None)] + [
                    (f"gateway-{up}", gw.url, gw.process()) for up, gw in gateways.items()
                ]
                for name, url, proc in targets:
                    cpu0 = sum(proc.cpu_times()[:2]) if proc else 0.0
                    res = asyncio.run(
                        closed_loop(
                            url, "http", c, seconds, model=MODEL, warmup_s=min(1.0, seconds / 3)
                        )
                    )
                    row = {"target": name, "protocol": "http", "concurrency": c, **_fields(res)}
                    if proc is not None:
                        cpu = sum(proc.cpu_times()[:2]) - cpu0
                        n = len(res.outcomes) + res.warm
                        row["gateway_cpu_ms_per_request"] = round(1000.0 * cpu / max(n, 1), 3)
                    rows.append(row)
                    print(f"  {name:16s} c={c:<3d} {row}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    added = []
    for r in rows:
        if r["target"] == "direct":
            continue
        d = next(
            x for x in rows if x["target"] == "direct" and x["concurrency"] == r["concurrency"]
        )
        added.append(
            {
                "target": r["target"],
                "concurrency": r["concurrency"],
                "added_p50_ms": round(r["p50_ms"] - d["p50_ms"], 3),
                "added_p99_ms": round(r["p99_ms"] - d["p99_ms"], 3),
            }
        )
    return {"mode": "overhead", "cpus": os.cpu_count(), "rows": rows, "added": added}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point")
    ap.add_argument("--concurrency", type=int, action="append", help="repeatable (1, 16)")
    ap.add_argument("--upstream", action="append", help="http1 and/or aiohttp (default both)")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = ap.parse_args(argv)
    doc = run(args.seconds, args.concurrency or [1, 16], args.upstream or ["http1", "aiohttp"])
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"{'target':18s} {'c':>3s} {'rps':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for r in doc["rows"]:
        print(
            f"{r['target']:18s} {r['concurrency']:3d} {r['rps']:8.0f} "
            f"{r['p50_ms']:8.3f} {r['p99_ms']:8.3f}"
        )
    print(f"\n{'added over direct':18s} {'c':>3s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for a in doc["added"]:
        print(
            f"{a['target']:18s} {a['concurrency']:3d} {a['added_p50_ms']:8.3f} "
            f"{a['added_p99_ms']:8.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
