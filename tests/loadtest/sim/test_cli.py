from __future__ import annotations

from pathlib import Path

import numpy as np

from loadtest.sim.cli import run_simulate
from loadtest.sim.metrics import timeline, violation_mask
from loadtest.sim.randomgen import random_scenario
from loadtest.sim.runner import run_scenario

DEMO = Path(__file__).resolve().parents[3] / "loadtest" / "scenarios" / "demo.yaml"


def test_timeline_counts_add_up() -> None:
    run = run_scenario(random_scenario(5, duration_s=3.0), ["synergai", "round_robin"], 1)
    tl = timeline(run)
    n = len(run.trace)
    assert tl["bin_s"] == 1.0
    for name, res in run.results.items():
        p = tl["policies"][name]
        assert len(p["requests"]) == len(p["violations"]) == 3
        assert sum(p["requests"]) == n
        assert sum(p["violations"]) == int(violation_mask(run.scenario, run.trace, res).sum())
        assert set(p["pool_load"]) == {pool.name for pool in run.scenario.pools}
        assert sum(sum(v) for v in p["pool_load"].values()) == int((res.worker >= 0).sum())
        assert len(p["latencies_ms"]) == min(20_000, int(np.isfinite(res.latency_ms).sum()))


def test_simulate_html_report(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    rc = run_simulate(DEMO, ["synergai", "round_robin"], None, True, None, out, False)
    assert rc == 0 and out.exists()
    text = out.read_text(encoding="utf-8")
    assert '<table class="policies">' in text
    assert "<td>synergai</td>" in text and "<td>round_robin</td>" in text
    # summary, violations over time, latency CDF, pool shares and pool load over time
    assert text.count("data:image/png;base64,") >= 5
    assert "no timeline" not in text.lower()
