"""``synergai bench overhead``: what the gateway costs, against Triton, nginx and Envoy.

One run, one Triton server (one emulated model that answers at once: ``echo``, 0.01 ms, two
instances, so the server is never the slowest part), three ways in:

* ``direct``: the client talks to Triton's HTTP port;
* ``gateway``: through one ``synergai serve`` replica (its default policy, shared state in a real
  Valkey), REST in and, for the ``grpc`` rows, gRPC in and out;
* ``nginx``: through ``nginx`` (Debian package, one worker process, ``least_conn``, upstream
  keep-alive) when the binary is installed; otherwise that column is skipped with a message;
* ``envoy`` and ``envoy+epp``: through a real Envoy balancing on its own, and through Envoy with
  ``synergai epp`` picking every request (:mod:`loadtest.overhead_envoy`).

Then one large-tensor row per target (1 MiB input, :data:`MIB_CONCURRENCY` clients; REST in
Triton's binary-tensor extension), the gRPC model-in-body variant included (its body crosses
the picker). Rows run concurrency by concurrency, every target in turn,
so a drifting machine hurts no target alone. ``summary`` condenses the issue-17 figures.

For each target and concurrency in :data:`CONCURRENCY` (or ``--concurrency``) a closed loop
(each client sends its next request when the last one answered; one keep-alive connection per
client) runs ``warm-up + duration`` seconds; rows give throughput, p50 and p99 at the client.
The gateway's CPU time per request is ``Δ(user + system CPU of the gateway process) /
requests`` over all its HTTP rows (psutil), since on a 2-core machine the load generator, the
gateway and Triton share the cores and throughput alone hides where the time goes.

``SYNERGAI_OVERHEAD_PROFILE=DIR`` additionally records the gateway with ``py-spy`` during an extra
concurrency-32 run and writes ``DIR/gateway.speedscope.json`` plus ``DIR/top.txt`` (the functions
with the most samples, self and total), which is how the hot-path findings in
``docs/benchmarks.md`` were made.
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
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest.bench_stats import percentile
from loadtest.gateway_process import GatewayProcess
from loadtest.loops import ClosedLoopResult, closed_loop
from loadtest.overhead_envoy import (
    GRPCIO,
    MIB_WIDTH,
    NOOP,
    NOOP_GRPCIO,
    OverheadTarget,
    envoy_targets,
    summary,
)
from loadtest.overhead_rig import MODEL, MODEL_MS, Nginx, echo_rig, nginx_binary

__all__ = ["CONCURRENCY", "main", "plot_overhead", "run_overhead", "summarize_collapsed"]

CONCURRENCY: tuple[int, ...] = (1, 8, 32, 128)
"""Closed-loop client counts, each its own row."""
MIB_CONCURRENCY = 8
"""Closed-loop clients of the large-tensor (1 MiB input) rows, one per target."""
_WARMUP_S = 0.5


def _row(target: str, protocol: str, r: ClosedLoopResult) -> dict[str, Any]:
    p50 = percentile(r.latencies_ms, 50)
    p99 = percentile(r.latencies_ms, 99)
    return {
        "target": target,
        "protocol": protocol,
        "concurrency": r.concurrency,
        "rps": round(r.rps, 1),
        "p50_ms": None if p50 is None else round(p50, 3),
        "p99_ms": None if p99 is None else round(p99, 3),
        "errors": r.errors,
    }


def _cpu_s(proc: Any) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _run_row(
    target: OverheadTarget, conc: int, width: int, duration: float, say: Any
) -> dict[str, Any]:
    """One closed loop against ``target``; the row, with the CPU per request it watches."""
    before = {key: _cpu_s(proc) for key, proc in target.cpu.items()}
    r = asyncio.run(
        closed_loop(target.url, target.protocol, conc, duration, model=MODEL,
                    warmup_s=_WARMUP_S, headers=target.headers, width=width)
    )  # fmt: skip
    row = _row(target.name, target.protocol, r)
    if target.variant:
        row["variant"] = target.variant
    if width != 4:
        row["tensor_bytes"] = 4 * width
    n = max(1, len(r.latencies_ms) + r.errors)
    for key, proc in target.cpu.items():
        row[key] = round(1000 * (_cpu_s(proc) - before[key]) / n, 3)
    label = f"{target.name}{'/' + target.variant if target.variant else ''}"
    size = " 1MiB" if width != 4 else ""
    say(
        f"{label:>22} {target.protocol:<4} c={conc:<3}{size} {row['rps']:>8.1f} req/s  "
        f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  errors {row['errors']}"
    )
    return row


def _mean_cpu(rows: list[dict[str, Any]], target: str, key: str) -> float | None:
    """CPU ms per request of ``target``'s small-tensor HTTP rows (variants apart), weighted by
    requests.
    """
    picked = [r for r in rows if r["target"] == target and r["protocol"] == "http"
              and key in r and not r.get("tensor_bytes") and not r.get("variant")]  # fmt: skip
    total = float(sum(r["rps"] for r in picked))
    if not total:
        return None
    weighted = float(sum(r[key] * r["rps"] for r in picked))
    return round(weighted / total, 3)


def summarize_collapsed(text: str, top: int = 25) -> str:
    """Top functions of a py-spy ``--format raw`` (collapsed stacks) profile, self and total.

    Each line is ``frame;frame;...;leaf count``; self time goes to the leaf, total time to every
    distinct frame of the stack.
    """
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    n = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        n += c
        frames = stack.split(";")
        self_c[frames[-1]] += c
        for f in set(frames):
            total_c[f] += c
    if n == 0:
        return "(no samples)\n"
    lines = [f"{n} samples", "", "self%  function"]
    lines += [f"{100 * c / n:5.1f}  {f}" for f, c in self_c.most_common(top)]
    # frames on (nearly) every stack are the process's entry points: no information
    inner = [(f, c) for f, c in total_c.most_common() if c < 0.85 * n]
    lines += ["", "total%  function (frames on >= 85% of stacks left out)"]
    lines += [f"{100 * c / n:6.1f}  {f}" for f, c in inner[:top]]
    return "\n".join(lines) + "\n"


def _profile(gw_pid: int, url: str, out_dir: Path, duration: float, say: Any) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        say("py-spy not installed; no profile")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "gateway.collapsed.txt"
    secs = max(2, int(duration))
    cmd = [spy, "record", "--pid", str(gw_pid), "--duration", str(secs), "--rate", "250"]
    cmd += ["--nonblocking", "--format", "raw", "--output", str(raw)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        asyncio.run(closed_loop(url, "http", 32, secs + 0.5, model=MODEL, warmup_s=0.2))
    finally:
        try:
            _, err = proc.communicate(timeout=secs + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    if raw.exists():
        (out_dir / "top.txt").write_text(summarize_collapsed(raw.read_text()), encoding="utf-8")
        say(f"py-spy profile: {out_dir / 'top.txt'}")
    else:
        say(f"py-spy failed: {err.decode(errors='replace')[-500:]}")


def _table(doc: dict[str, Any]) -> Table:
    t = Table(title="gateway overhead (closed loop)", title_justify="left")
    for col in ("target", "proto", "conc", "req/s", "p50 ms", "p99 ms", "vs direct", "cpu ms/req"):
        t.add_column(col, justify="left" if col in ("target", "proto") else "right")

    def key(r: dict[str, Any]) -> tuple[str, int, int]:
        return (r["protocol"], r["concurrency"], r.get("tensor_bytes", 0))

    direct = {key(r): r for r in doc["rows"] if r["target"] == "direct"}
    for r in doc["rows"]:
        d = direct.get(key(r))
        rel = "-"
        if d and d["rps"] and r["target"] != "direct":
            added = (r["p50_ms"] or 0) - (d["p50_ms"] or 0)
            rel = f"{100 * r['rps'] / d['rps']:.0f}% rps, +{added:.2f} ms p50"
        cpu = r.get("gateway_cpu_ms_per_request", r.get("epp_cpu_ms_per_request"))
        name = r["target"] + (f" ({r['variant']})" if r.get("variant") else "")
        size = " 1MiB" if r.get("tensor_bytes") else ""
        t.add_row(
            name,
            r["protocol"],
            f"{r['concurrency']}{size}",
            f"{r['rps']:.0f}",
            f"{r['p50_ms'] or 0:.2f}",
            f"{r['p99_ms'] or 0:.2f}",
            rel,
            "-" if cpu is None else f"{cpu:.3f}",
        )
    return t


def _grpc_ready(target: str) -> bool:
    """Whether the gRPC front door at ``target`` answers ``ServerReady``."""
    with contextlib.suppress(Exception):
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        with grpc.insecure_channel(target) as ch:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
            return bool(stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=2).ready)
    return False


def _gateway_policy() -> str:
    from gateway.routing.registry import policy_names

    names = policy_names()
    return "synergai" if "synergai" in names else "least_outstanding"


def plot_overhead(doc: dict[str, Any], path: Path) -> Path:
    """PNG: throughput and p50 against concurrency, one line per (target, protocol)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in doc["rows"]:
        if r.get("tensor_bytes"):
            continue  # one point per target: the table has them
        variant = f", {r['variant']}" if r.get("variant") else ""
        series.setdefault(f"{r['target']} ({r['protocol']}{variant})", []).append(r)
    levels = sorted({r["concurrency"] for rs in series.values() for r in rs})
    for label, rows in series.items():
        c = [r["concurrency"] for r in rows]
        ax1.plot(c, [r["rps"] for r in rows], marker="o", label=label)
        ax2.plot(c, [r["p50_ms"] or 0 for r in rows], marker="o", label=label)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels)
        ax.set_xticklabels([str(c) for c in levels])
        ax.set_xlabel("closed-loop concurrency")
        ax.legend(fontsize=8)
    ax1.set_title("throughput (req/s)")
    ax2.set_yscale("log")
    ax2.set_title("p50 latency at the client (ms)")
    cpu = doc.get("gateway_cpu_ms_per_request")
    fig.suptitle(
        "synergai bench overhead: one Triton worker direct, through the gateway, through nginx"
        + (f" (gateway CPU {cpu:.2f} ms/request)" if cpu else "")
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtest.overhead [--duration S] [--json] [--plot F]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m loadtest.overhead", description=__doc__)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per row")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG here")
    p.add_argument("--concurrency", type=int, action="append", help="repeatable (1, 32)")
    args = p.parse_args(argv)
    return run_overhead(args.json, args.duration, plot=args.plot, concurrency=args.concurrency)


def run_overhead(
    json_out: bool,
    duration: float,
    plot: Path | None = None,
    concurrency: Sequence[int] | None = None,
) -> int:
    """``synergai bench overhead``: see the module docstring. Returns the exit code.

    Args:
        json_out: print exactly one JSON document on stdout (tables go to stderr).
        duration: measured seconds per (target, protocol, concurrency) row.
        plot: also write a PNG of throughput and p50 against concurrency.
        concurrency: the closed-loop client counts (default :data:`CONCURRENCY`); the 1 MiB
            rows always run at :data:`MIB_CONCURRENCY`.
    """
    from loadtest.bench import machine

    err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    out = err if json_out else Console(width=None if sys.stdout.isatty() else 120)

    def say(msg: str) -> None:
        err.print(f"[dim]{msg}[/dim]")

    if duration <= 0:
        err.print("[red]--duration must be > 0[/red]")
        return 2
    levels = tuple(sorted(set(concurrency))) if concurrency else CONCURRENCY
    if levels[0] < 1:
        err.print("[red]--concurrency must be >= 1[/red]")
        return 2
    mach = machine()  # load average before our own load
    wd = Path(tempfile.mkdtemp(prefix="synergai-overhead-"))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    cpu_ms: float | None = None
    epp_cpu_ms: float | None = None
    policy = _gateway_policy()
    try:
        with contextlib.ExitStack() as stack:
            server, valkey, cfg = stack.enter_context(echo_rig(wd))
            gw = stack.enter_context(
                GatewayProcess(cfg, wd, policy=policy, redis_url=valkey.url, name="overhead")
            )
            gproc = {"gateway_cpu_ms_per_request": gw.process()}
            targets: list[OverheadTarget] = [
                OverheadTarget("direct", "http", server.http_url),
                OverheadTarget("gateway", "http", gw.url, cpu=gproc),
            ]
            nbin = nginx_binary()
            if nbin:
                nginx = Nginx(nbin, server.ports.http, wd)
                stack.callback(nginx.stop)
                nginx.start()
                targets.append(OverheadTarget("nginx", "http", nginx.url))
            else:
                msg = "nginx not installed: nginx column skipped (apt-get install -y nginx)"
                notes.append(msg)
                err.print(f"[yellow]{msg}[/yellow]")
            if _grpc_ready(gw.grpc_target):
                targets += [
                    OverheadTarget("direct", "grpc", server.grpc_url),
                    OverheadTarget("gateway", "grpc", gw.grpc_target, cpu=gproc),
                ]
            else:
                msg = "gateway gRPC front door not answering: gRPC rows skipped"
                notes.append(msg)
                err.print(f"[yellow]{msg}[/yellow]")
            envoy = stack.enter_context(envoy_targets(cfg, wd, valkey.url, MODEL))
            targets += envoy.targets
            notes += envoy.notes
            for note in envoy.notes:
                err.print(f"[yellow]{note}[/yellow]")
            plan = [(t, c, 4) for c in levels for t in targets]  # concurrency-major
            # 1 MiB: every target, and the gRPC model-in-body variant (the picker buffers it)
            plan += [(t, MIB_CONCURRENCY, MIB_WIDTH) for t in targets
                     if t.variant not in (NOOP, NOOP_GRPCIO, GRPCIO)]  # fmt: skip
            say(
                f"{len(plan)} runs of {_WARMUP_S + duration:.1f} s: "
                f"{', '.join(sorted({f'{t.name}/{t.protocol}' for t in targets}))} x "
                f"concurrency {list(levels)}, and 1 MiB tensors at c={MIB_CONCURRENCY}"
            )
            for target, c, width in plan:
                rows.append(_run_row(target, c, width, duration, say))
            cpu_ms = _mean_cpu(rows, "gateway", "gateway_cpu_ms_per_request")
            epp_cpu_ms = _mean_cpu(rows, "envoy+epp", "epp_cpu_ms_per_request")
            prof = os.environ.get("SYNERGAI_OVERHEAD_PROFILE")
            if prof and gw.pid is not None:
                _profile(gw.pid, gw.url, Path(prof), max(duration, 5.0), say)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; every child stopped[/yellow]")
        return 130
    except Exception as exc:
        err.print(f"[red]overhead failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    doc: dict[str, Any] = {
        "mode": "overhead",
        "rows": rows,
        "gateway_cpu_ms_per_request": cpu_ms,
        "epp_cpu_ms_per_request": epp_cpu_ms,
        "summary": summary(rows),
        "meta": {
            "loadavg_1m_end": round(os.getloadavg()[0], 2),
            "model": f"{MODEL} (emulated, {MODEL_MS} ms, 2 instances)",
            "duration_s": duration,
            "concurrency": list(levels),
            "warmup_s": _WARMUP_S,
            "gateway_policy": policy,
            "notes": notes,
            "machine": mach,
        },
    }
    out.print(_table(doc))
    if cpu_ms is not None:
        out.print(f"gateway CPU per request (HTTP rows): {cpu_ms:.3f} ms")
    if epp_cpu_ms is not None:
        out.print(f"endpoint picker CPU per request (HTTP rows): {epp_cpu_ms:.3f} ms")
    if plot is not None:
        plot_overhead(doc, plot)
        err.print(f"plot written to {plot}")
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
