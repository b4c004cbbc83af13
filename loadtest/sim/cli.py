"""``synergai simulate``: the edge where wall clock, files and the terminal are touched."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.routing.registry import policy_names
from gateway.scenario import load_scenario
from gateway.yamlio import FormatError
from loadtest.sim.decisions import bench_decisions
from loadtest.sim.runner import ScenarioRun, run_scenario

__all__ = ["run_simulate"]

BENCH_SIZES = (16, 1000)


def _table(doc: dict[str, Any]) -> Table:
    t = Table(title=f"simulate {doc['scenario']} (seed {doc['seed']}, {doc['duration_s']:g} s)")
    for col in (
        "policy",
        "requests",
        "violations",
        "rate",
        "shed",
        "errors",
        "goodput/s",
        "p50 ms",
        "p99 ms",
        "decision µs",
    ):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, p in doc["policies"].items():
        t.add_row(
            name,
            str(p["requests"]),
            str(p["slo_violations"]),
            f"{100 * p['violation_rate']:.2f}%",
            str(p["shed"]),
            str(p["errors"]),
            f"{p['goodput_rps']:.1f}",
            f"{p['p50_ms']}",
            f"{p['p99_ms']}",
            f"{p['decision_us_p50']}",
        )
    return t


def _html(run: ScenarioRun, path: Path) -> None:
    """The full report (:mod:`loadtest.report`): tables, summary and timeline plots."""
    from loadtest.report import write_html_report
    from loadtest.sim.metrics import timeline

    write_html_report(run.document, path, timeline=timeline(run))


def run_simulate(
    scenario: Path,
    policies: list[str] | None,
    seed: int | None,
    json_out: bool,
    plot: Path | None,
    html: Path | None,
    bench_decisions_flag: bool,
    gateways: int = 1,
) -> int:
    """Simulate ``scenario`` under ``policies`` (default: all); exit status.

    ``--json`` prints exactly one JSON document on stdout (progress on stderr); otherwise a
    table. ``--bench-decisions`` adds ``decision_bench`` (p50/p99 µs at 16 and 1,000 workers).
    ``--gateways N`` (N > 1) runs N replicas sharing per-worker load
    (:mod:`loadtest.sim.replicas`); the document then has ``"routers": N``.
    """
    err = Console(stderr=True)
    try:
        sc = load_scenario(scenario)
    except (FormatError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    known = policy_names(include_sim_only=True)
    bad = [p for p in policies or [] if p not in known]
    if bad:
        err.print(f"[red]error:[/red] unknown policy {', '.join(bad)}; known: {', '.join(known)}")
        return 2
    if gateways < 1:
        err.print(f"[red]error:[/red] --gateways must be >= 1, got {gateways}")
        return 2
    run = run_scenario(
        sc,
        policies or None,
        seed,
        clock_ns=time.perf_counter_ns,
        progress=err.print,
        routers=gateways,
    )
    doc = run.document
    if bench_decisions_flag:
        doc["decision_bench"] = bench_decisions(sc, BENCH_SIZES, time.perf_counter_ns)
    if plot is not None:
        from loadtest.sim.plot import write_plot

        write_plot(run, plot)
        err.print(f"plot written to {plot}")
    if html is not None:
        _html(run, html)
        err.print(f"report written to {html}")
    if json_out:
        sys.stdout.write(json.dumps(doc) + "\n")
        return 0
    out = Console(width=max(Console().width, 130))
    out.print(_table(doc))
    for b in doc.get("decision_bench", {}).values():
        out.print(
            f"decision time, synergai, {int(b['workers'])} workers: "
            f"p50 {b['p50_us']} µs, p99 {b['p99_us']} µs"
        )
    return 0
