"""Human output of ``synergai bench``: tables (rich, on stderr or stdout) and PNG plots.

* :func:`policy_table` / :func:`compare_table`: one row per policy; the comparison shows the
  simulator's and the live violation rates side by side with the agreement test of
  :func:`loadtest.bench_fidelity.agree`.
* :func:`plot_live`: violation rate, goodput and p50/p99 bars per policy, and SLO violations
  per second over the run (from the timeline), in one PNG.
* :func:`plot_compare`: sim vs live violation rate per policy.
* :func:`timeline`: per-second arrivals, violations and per-pool load of each policy, from the
  per-request outcomes (the ``timeline`` argument of ``loadtest.report.write_html_report``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest.client import Arrival, Outcome

__all__ = [
    "compare_table",
    "plot_compare",
    "plot_live",
    "policy_table",
    "print_tables",
    "timeline",
]


def _f(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def policy_table(doc: Mapping[str, Any], title: str | None = None) -> Table:
    """The policies of a ``bench``/``simulate`` document as a rich table."""
    t = Table(title=title or f"{doc.get('scenario')} ({doc.get('mode', '')})", title_justify="left")
    for col in (
        "policy",
        "requests",
        "viol %",
        "shed",
        "errors",
        "goodput/s",
        "p50 ms",
        "p99 ms",
        "decide µs",
    ):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, r in doc.get("policies", {}).items():
        vr = r.get("violation_rate")
        t.add_row(
            name,
            str(r.get("requests", "-")),
            _f(None if vr is None else 100 * vr),
            str(r.get("shed", "-")),
            str(r.get("errors", "-")),
            _f(r.get("goodput_rps")),
            _f(r.get("p50_ms")),
            _f(r.get("p99_ms")),
            _f(r.get("decision_us_p50")),
        )
    return t


def compare_table(doc: Mapping[str, Any]) -> Table:
    """Sim vs live violation rate per policy, with ranks and the agreement verdict."""
    fid = doc.get("fidelity", {})
    t = Table(
        title=f"{doc.get('scenario')}: simulator vs live (violation rate)", title_justify="left"
    )
    for col in ("policy", "sim %", "live %", "diff pts", "rel", "sim rank", "live rank", "agree"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, row in fid.get("policies", {}).items():
        t.add_row(
            name,
            _f(row.get("sim_pct")),
            _f(row.get("live_pct")),
            _f(row.get("diff_pts"), "+.1f"),
            _f(row.get("rel_diff"), "+.0%"),
            str(row.get("sim_rank", "-")),
            str(row.get("live_rank", "-")),
            "yes" if row.get("agree") else "NO",
        )
    return t


def print_tables(doc: Mapping[str, Any], console: Console) -> None:
    """Print every table a bench document has (live, sim, comparison)."""
    if "live" in doc and "sim" in doc:
        meta = doc.get("meta", {})
        console.print(
            policy_table({"scenario": doc["scenario"], "mode": "sim", **{"policies": doc["sim"]}})
        )
        console.print(
            policy_table(
                {
                    "scenario": doc["scenario"],
                    "mode": f"live, {meta.get('protocol', 'http')}",
                    "policies": doc["live"],
                }
            )
        )
        console.print(compare_table(doc))
        verdict = doc.get("fidelity", {})
        console.print(
            f"agreement: {verdict.get('agreeing', 0)}/{len(verdict.get('policies', {}))} policies "
            f"within ±25% rel or ±2 pts; same ranking: {verdict.get('same_ranking')}"
        )
    else:
        console.print(policy_table(doc))


def timeline(
    trace: Sequence[Arrival],
    outcomes: Sequence[Outcome],
    worker_pool: Mapping[str, str],
    duration_s: float,
    bin_s: float = 1.0,
) -> dict[str, Any]:
    """One policy's per-bin arrivals, violations, per-pool load and latency sample."""
    n = max(1, int(duration_s / bin_s + 0.999))
    requests = [0] * n
    violations = [0] * n
    pools: dict[str, list[int]] = {p: [0] * n for p in sorted(set(worker_pool.values()))}
    lat: list[float] = []
    for a, o in zip(trace, outcomes, strict=True):
        b = min(n - 1, int(a.t_s / bin_s))
        requests[b] += 1
        good = o.status == "ok" and o.latency_ms <= a.slo_ms
        if not good:
            violations[b] += 1
        if o.status == "ok":
            lat.append(round(o.latency_ms, 3))
        pool = worker_pool.get(o.worker)
        if pool is not None:
            pools[pool][b] += 1
    return {
        "requests": requests,
        "violations": violations,
        "latencies_ms": lat[:20000],
        "pool_load": pools,
    }


def plot_live(doc: Mapping[str, Any], path: Path, tl: Mapping[str, Any] | None = None) -> Path:
    """PNG: violation rate, goodput, p50/p99 per policy; violations/s over time if ``tl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pol = doc["policies"]
    names = list(pol)
    x = range(len(names))
    rows = 2 if tl else 1
    fig, axes = plt.subplots(rows, 3, figsize=(15, 4.2 * rows), squeeze=False)
    vr = [100 * (pol[n].get("violation_rate") or 0) for n in names]
    gp = [pol[n].get("goodput_rps") or 0 for n in names]
    p50 = [pol[n].get("p50_ms") or 0 for n in names]
    p99 = [pol[n].get("p99_ms") or 0 for n in names]
    ax = axes[0][0]
    ax.bar(x, vr, color="tab:red")
    ax.set_title("SLO violations (%)")
    ax = axes[0][1]
    ax.bar(x, gp, color="tab:green")
    ax.set_title("goodput (req/s within SLO)")
    ax = axes[0][2]
    ax.bar([i - 0.2 for i in x], p50, width=0.4, label="p50")
    ax.bar([i + 0.2 for i in x], p99, width=0.4, label="p99")
    ax.set_yscale("log")
    ax.set_title("latency at the client (ms, ok only)")
    ax.legend()
    for ax in axes[0]:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=30, ha="right")
    if tl:
        per = tl.get("policies", {})
        bin_s = float(tl.get("bin_s", 1.0))
        ax = axes[1][0]
        for n in names:
            v = per.get(n, {}).get("violations", [])
            ax.plot([i * bin_s for i in range(len(v))], [c / bin_s for c in v], label=n)
        ax.set_title("SLO violations per second")
        ax.set_xlabel("s")
        ax.legend(fontsize=7)
        ax = axes[1][1]
        for n in names:
            lat = sorted(per.get(n, {}).get("latencies_ms", []))
            if lat:
                ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], label=n)
        ax.set_xscale("log")
        ax.set_title("latency CDF (ok requests, ms)")
        ax.legend(fontsize=7)
        ax = axes[1][2]
        pools = sorted({p for n in names for p in per.get(n, {}).get("pool_load", {})})
        bottom = [0.0] * len(names)
        for p in pools:
            vals = [float(sum(per.get(n, {}).get("pool_load", {}).get(p, []))) for n in names]
            ax.bar(x, vals, bottom=bottom, label=p)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_title("answered requests by pool")
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.legend(fontsize=7)
    meta = doc.get("meta", {})
    fig.suptitle(
        f"synergai bench --scenario {doc.get('scenario')} ({doc.get('mode', 'live')}, "
        f"{meta.get('protocol', 'http')}, {meta.get('gateways', 1)} gateway(s), "
        f"{doc.get('duration_s')} s/policy)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_compare(doc: Mapping[str, Any], path: Path) -> Path:
    """PNG: simulator vs live violation rate per policy (grouped bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["live"])
    x = range(len(names))
    sim = [100 * (doc["sim"].get(n, {}).get("violation_rate") or 0) for n in names]
    live = [100 * (doc["live"][n].get("violation_rate") or 0) for n in names]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar([i - 0.2 for i in x], sim, width=0.4, label="simulator")
    ax.bar([i + 0.2 for i in x], live, width=0.4, label="live")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("SLO violations (%)")
    ax.set_title(f"{doc.get('scenario')}: simulator vs live")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
