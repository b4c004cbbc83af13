"""One self-contained HTML report of a policy comparison (``simulate --html``, ``bench --html``).

Input: the policy-results JSON of DESIGN.md §3, as printed by ``simulate --json`` or
``bench --json`` (``{"scenario", "mode", "policies": {name: row}}``), or by
``bench --compare-sim --json`` (``{"scenario", "sim": {name: row}, "live": {name: row}}``).
From that alone the report shows the policy table (plus per priority) and bar charts of
violation rate, goodput and p50/p99.

Optional ``timeline`` (not part of the JSON output; the runner that has per-request outcomes
builds it) adds the time-series plots::

    timeline = {
        "bin_s": 1.0,                    # width of one bin in seconds (default 1.0)
        "policies": {                    # same names as result["policies"]
            "synergai": {
                "requests":     [int, ...],         # arrivals per bin (optional)
                "violations":   [int, ...],         # SLO violations per bin, by arrival time
                "latencies_ms": [float, ...],       # client latency of each answered request
                                                    # (a sample is fine; at most 20,000 used)
                "pool_load":    {"edge-agx": [int, ...], ...},  # requests sent to each pool
                                                    # per bin, or one total per pool
            },
        },
    }

Every key is optional; a plot whose data is missing is replaced by a one-line note. Without
``pool_load`` the load plot uses totals found in the result rows: ``per_pool``
(``{pool: requests}``) or else ``workers`` (``{worker: requests}``, as ``bench`` writes). For a
compare-sim result pass ``{"sim": <timeline>, "live": <timeline>}``. Plots are PNGs from
matplotlib (Agg, no display) embedded as base64, so the file opens offline, alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["render_html_report", "write_html_report"]

MAX_CDF_POINTS = 20_000
COLORS = ["#3558d4", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0b7285", "#e67700", "#495057"]
COLUMNS: list[tuple[str, str, str]] = [  # key, header, format
    ("requests", "requests", "{:.0f}"),
    ("ok", "ok", "{:.0f}"),
    ("slo_violations", "SLO violations", "{:.0f}"),
    ("violation_rate", "violation rate", "pct"),
    ("shed", "shed", "{:.0f}"),
    ("errors", "errors", "{:.0f}"),
    ("goodput_rps", "goodput req/s", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("decision_us_p50", "decision µs p50", "{:.1f}"),
]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}
h2{font-size:17px;margin-top:28px;border-bottom:1px solid #e3e6ec;padding-bottom:4px}
h3{font-size:14px;margin:18px 0 6px}.meta{color:#667085}
table{border-collapse:collapse;margin:8px 0}th,td{padding:4px 10px;border-bottom:1px solid #e3e6ec;
text-align:right;font-variant-numeric:tabular-nums}th{background:#fafbfc;color:#667085;font-size:12px}
td:first-child,th:first-child{text-align:left}td.best{font-weight:700;color:#1a7f37}
img{max-width:100%;border:1px solid #e3e6ec;border-radius:6px;margin:6px 0}
.note{color:#667085;font-style:italic}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
"""


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def _fmt(x: Any, spec: str) -> str:
    v = _num(x)
    if v is None:
        return "\u2013"  # en dash
    return f"{100 * v:.2f} %" if spec == "pct" else spec.format(v)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _policy_table(policies: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(policies)
    best: dict[str, float] = {}
    for key, lower in (("violation_rate", True), ("goodput_rps", False), ("p99_ms", True)):
        vals = [v for n in names if (v := _num(policies[n].get(key))) is not None]
        if vals:
            best[key] = min(vals) if lower else max(vals)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS)
    rows = []
    for name in names:
        row = policies[name]
        cells = []
        for key, _, spec in COLUMNS:
            cls = ' class="best"' if key in best and _num(row.get(key)) == best[key] else ""
            cells.append(f"<td{cls}>{_fmt(row.get(key), spec)}</td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f'<table class="policies"><tr><th>policy</th>{head}</tr>{"".join(rows)}</table>'


def _priority_table(policies: Mapping[str, Mapping[str, Any]]) -> str:
    prios = sorted(
        {str(p) for row in policies.values() for p in (row.get("per_priority") or {})},
        key=lambda p: (len(p), p),
    )
    if not prios:
        return ""
    head = "".join(f"<th>p{html.escape(p)} violation rate</th>" for p in prios)
    rows = []
    for name, row in policies.items():
        per = row.get("per_priority") or {}
        cells = "".join(
            f"<td>{_fmt((per.get(p) or {}).get('violation_rate'), 'pct')}</td>" for p in prios
        )
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return (
        f'<h3>By priority</h3><table class="priorities"><tr><th>policy</th>{head}</tr>'
        f"{''.join(rows)}</table>"
    )


def _summary_plot(policies: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(policies)
    fig = Figure(figsize=(11, 3.2))
    axes = fig.subplots(1, 3)
    x = np.arange(len(names))
    for ax, key, title, scale in (
        (axes[0], "violation_rate", "SLO violation rate (%)", 100.0),
        (axes[1], "goodput_rps", "goodput (req/s)", 1.0),
    ):
        vals = [(_num(policies[n].get(key)) or 0.0) * scale for n in names]
        ax.bar(x, vals, color=[COLORS[i % len(COLORS)] for i in range(len(names))])
        ax.set_title(title, fontsize=10)
    p50 = [_num(policies[n].get("p50_ms")) or 0.0 for n in names]
    p99 = [_num(policies[n].get("p99_ms")) or 0.0 for n in names]
    axes[2].bar(x - 0.2, p50, 0.4, label="p50", color="#3558d4")
    axes[2].bar(x + 0.2, p99, 0.4, label="p99", color="#e8590c")
    axes[2].set_title("latency of answered requests (ms)", fontsize=10)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _violations_plot(tl: Mapping[str, Any], names: Sequence[str]) -> str:
    bin_s = float(tl.get("bin_s") or 1.0)
    per = tl.get("policies") or {}
    series = {n: per[n]["violations"] for n in names if (per.get(n) or {}).get("violations")}
    if not series:
        return _note("Violations over time: no timeline['policies'][p]['violations'] given.")
    fig = Figure(figsize=(11, 3.4))
    ax = fig.subplots()
    for i, (name, counts) in enumerate(series.items()):
        t = np.arange(len(counts)) * bin_s
        ax.plot(t, np.asarray(counts, dtype=float) / bin_s, label=name, color=COLORS[i % 8], lw=1.4)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("SLO violations / s")
    ax.set_title("SLO violations over time (late, shed, failed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=min(4, len(series)))
    return _png(fig)


def _cdf_plot(tl: Mapping[str, Any], names: Sequence[str]) -> str:
    per = tl.get("policies") or {}
    series = {n: per[n]["latencies_ms"] for n in names if (per.get(n) or {}).get("latencies_ms")}
    if not series:
        return _note("Latency CDF: no timeline['policies'][p]['latencies_ms'] given.")
    fig = Figure(figsize=(11, 3.6))
    ax = fig.subplots()
    for i, (name, lat) in enumerate(series.items()):
        v = np.sort(np.asarray(lat, dtype=float)[:MAX_CDF_POINTS])
        v = v[np.isfinite(v) & (v > 0)]
        if v.size:
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=name,
                    color=COLORS[i % 8], lw=1.4)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("latency at the client (ms, log)")
    ax.set_ylabel("fraction of answered requests")
    ax.set_title("Latency CDF per policy", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _pool_totals(load: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pool, v in load.items():
        total = float(np.sum(np.asarray(v, dtype=float))) if isinstance(v, list) else _num(v)
        out[str(pool)] = total or 0.0
    return out


def _pool_plot(
    tl: Mapping[str, Any], names: Sequence[str], policies: Mapping[str, Mapping[str, Any]]
) -> str:
    bin_s = float(tl.get("bin_s") or 1.0)
    per = tl.get("policies") or {}
    loads = {n: per[n]["pool_load"] for n in names if (per.get(n) or {}).get("pool_load")}
    what = "pool"
    if not loads:  # fall back on totals in the result rows: per_pool, else per worker
        for key in ("per_pool", "workers"):
            loads = {n: policies[n][key] for n in names if policies[n].get(key)}
            if loads:
                what = "pool" if key == "per_pool" else "worker"
                break
    if not loads:
        return _note("Per-pool load: no timeline['policies'][p]['pool_load'] given.")
    pools = sorted({p for load in loads.values() for p in load})
    color = {p: COLORS[i % len(COLORS)] for i, p in enumerate(pools)}
    fig = Figure(figsize=(11, 3.4))
    ax = fig.subplots()
    left = np.zeros(len(loads))
    totals = [_pool_totals(load) for load in loads.values()]
    for pool in pools:
        share = np.array([t.get(pool, 0.0) / (sum(t.values()) or 1.0) for t in totals]) * 100
        ax.barh(list(loads), share, left=left, label=pool, color=color[pool])
        left += share
    ax.invert_yaxis()
    ax.set_xlabel("share of requests (%)")
    ax.set_title(f"Requests per {what}, by policy", fontsize=10)
    ax.legend(fontsize=8, ncol=min(6, len(pools)), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    out = _png(fig)
    timed = {
        n: load for n, load in loads.items() if any(isinstance(v, list) for v in load.values())
    }
    if timed:
        cols = min(3, len(timed))
        rows = math.ceil(len(timed) / cols)
        fig = Figure(figsize=(11, 2.6 * rows))
        axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
        for ax, (name, load) in zip(axes, timed.items(), strict=False):
            series = [np.asarray(load.get(p, []), dtype=float) for p in pools]
            n = max(len(s) for s in series)
            stack = [np.pad(s, (0, n - len(s))) / bin_s for s in series]
            ax.stackplot(np.arange(n) * bin_s, *stack, colors=[color[p] for p in pools])
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
        for ax in axes[len(timed) :]:
            ax.set_visible(False)
        axes[0].set_ylabel("req/s per pool")
        fig.suptitle("Load per pool over time (stacked)", fontsize=10, y=1.0)
        fig.legend(pools, fontsize=8, ncol=min(6, len(pools)), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0))  # fmt: skip
        fig.subplots_adjust(top=0.82, hspace=0.5)
        out += _png(fig)
    return out


def _run_section(
    title: str, policies: Mapping[str, Mapping[str, Any]], tl: Mapping[str, Any] | None
) -> str:
    if not policies:
        return f"<h2>{html.escape(title)}</h2>" + _note("No policy results.")
    names = list(policies)
    parts = [
        f"<h2>{html.escape(title)}</h2>",
        _policy_table(policies),
        _priority_table(policies),
        "<h3>Summary</h3>",
        _summary_plot(policies),
    ]
    tl = tl or {}
    if not tl:
        parts.append(
            _note("No timeline given: only the table and summary (see loadtest/report.py).")
        )
    parts += ["<h3>Violations over time</h3>", _violations_plot(tl, names)]
    parts += ["<h3>Latency CDF</h3>", _cdf_plot(tl, names)]
    parts += ["<h3>Per-pool load</h3>", _pool_plot(tl, names, policies)]
    return "\n".join(p for p in parts if p)


def _compare_table(sim: Mapping[str, Any], live: Mapping[str, Any]) -> str:
    names = [n for n in sim if n in live]
    if not names:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td>"
        + "".join(
            f"<td>{_fmt(src[n].get(k), s)}</td>"
            for k, s in (("violation_rate", "pct"), ("p99_ms", "{:.1f}"))
            for src in (sim, live)
        )
        + "</tr>"
        for n in names
    )
    return (
        '<h2>Simulator vs live</h2><table class="compare"><tr><th>policy</th>'
        "<th>sim violation rate</th><th>live violation rate</th><th>sim p99 ms</th>"
        f"<th>live p99 ms</th></tr>{rows}</table>"
    )


def render_html_report(result: Mapping[str, Any], timeline: Mapping[str, Any] | None = None) -> str:
    """The report as one HTML string (see the module docstring for both inputs)."""
    scenario = str(result.get("scenario", "?"))
    meta = [f"scenario <b>{html.escape(scenario)}</b>"]
    meta_doc = result.get("meta")
    extra: Mapping[str, Any] = meta_doc if isinstance(meta_doc, Mapping) else {}
    for key in ("mode", "seed", "duration_s"):
        value = result.get(key, extra.get(key))
        if value is not None:
            meta.append(f"{key} {html.escape(str(value))}")
    sections: list[str] = []
    if "policies" in result:
        mode = str(result.get("mode", ""))
        sections.append(_run_section(f"Policies ({mode})" if mode else "Policies",
                                     result["policies"], timeline))  # fmt: skip
    else:
        runs = [k for k in ("sim", "live") if isinstance(result.get(k), Mapping)]
        if len(runs) == 2:
            sections.append(_compare_table(result["sim"], result["live"]))
        for run in runs:
            sections.append(_run_section(run, result[run], (timeline or {}).get(run)))
        if not runs:
            sections.append(_note("No 'policies' (nor 'sim'/'live') in this result."))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>SynergAI report: {html.escape(scenario)}</title><style>{CSS}</style></head>"
        f'<body><h1>SynergAI policy report</h1><p class="meta">{" · ".join(meta)}</p>\n'
        + "\n".join(sections)
        + '\n<p class="meta">A request violates its SLO when it is not answered successfully '
        "within slo_ms at the client: late, shed, failed or lost (DESIGN.md §3).</p>"
        "</body></html>\n"
    )


def write_html_report(
    result: dict[str, Any], path: Path, timeline: dict[str, Any] | None = None
) -> None:
    """Write one self-contained HTML file for a DESIGN.md §3 policy-results document.

    Args:
        result: the ``--json`` output of ``simulate`` or ``bench`` (or ``bench --compare-sim``).
        path: the HTML file to write; parent directories are created.
        timeline: optional time series and latency samples (module docstring).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html_report(result, timeline), encoding="utf-8")
