"""A generated HTML report opened in headless chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtest.report import write_html_report

pytestmark = pytest.mark.browser

POOLS = ("edge-agx", "cloud-x86", "cloud-gpu")


def synthetic() -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(7)
    policies: dict[str, Any] = {}
    tl: dict[str, Any] = {"bin_s": 1.0, "policies": {}}
    for i, (name, viol, p50) in enumerate(
        [("synergai", 0.02, 11.0), ("least_outstanding", 0.07, 16.0), ("round_robin", 0.19, 24.0)]
    ):
        policies[name] = {
            "requests": 3600,
            "ok": 3560 - 10 * i,
            "slo_violations": int(3600 * viol),
            "violation_rate": viol,
            "shed": 10 * i,
            "errors": 0,
            "goodput_rps": 60 * (1 - viol),
            "p50_ms": p50,
            "p99_ms": p50 * 4,
            "per_priority": {
                "0": {"violation_rate": viol * 1.4},
                "1": {"violation_rate": viol / 3},
            },
            "decision_us_p50": 8.0 + i,
        }
        tl["policies"][name] = {
            "violations": rng.poisson(1 + 5 * i, 60).tolist(),
            "latencies_ms": rng.lognormal(np.log(p50), 0.55, 2000).tolist(),
            "pool_load": {
                p: rng.poisson([30, 20, 10][j] if i == 0 else 20, 60).tolist()
                for j, p in enumerate(POOLS)
            },
        }
    result = {"scenario": "edge-cloud", "mode": "sim", "seed": 1, "duration_s": 60}
    result["policies"] = policies
    return result, tl


def test_report_opens_in_chromium(chromium: Any, artifacts: Path, tmp_path: Path) -> None:
    result, tl = synthetic()
    path = artifacts / "report.html"
    write_html_report(result, path, tl)
    dom = chromium.render(
        path.as_uri(), screenshot=artifacts / "report.png", budget_ms=1000, size=(1300, 2800)
    )
    assert "<h1>SynergAI policy report</h1>" in dom
    table = re.search(r'<table class="policies">.*?</table>', dom, re.S)
    assert table is not None and table.group(0).count("<tr>") == 4
    assert "synergai" in table.group(0) and "2.00 %" in table.group(0)
    assert len(re.findall(r'<img alt="plot" src="data:image/png;base64,', dom)) == 5
