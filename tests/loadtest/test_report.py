from __future__ import annotations

import base64
import re
from typing import Any

import numpy as np
import pytest

from loadtest.report import render_html_report, write_html_report

POLICIES = ("synergai", "least_outstanding", "round_robin")
POOLS = ("edge-agx", "cloud-x86", "cloud-gpu")


def row(viol: float, p99: float) -> dict[str, Any]:
    return {
        "requests": 3600,
        "ok": 3550,
        "slo_violations": int(3600 * viol),
        "violation_rate": viol,
        "shed": 30,
        "errors": 0,
        "goodput_rps": 60 * (1 - viol),
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "per_priority": {"0": {"violation_rate": viol * 1.5}, "1": {"violation_rate": viol / 2}},
        "decision_us_p50": 9.5,
    }


def result() -> dict[str, Any]:
    rows = {"synergai": row(0.0222, 48.0), "least_outstanding": row(0.08, 90.0)}
    rows["round_robin"] = row(0.21, 160.0)
    return {"scenario": "edge-cloud", "mode": "sim", "seed": 1, "duration_s": 60, "policies": rows}


def timeline(seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"bin_s": 1.0, "policies": {}}
    for i, name in enumerate(POLICIES):
        out["policies"][name] = {
            "requests": [60] * 60,
            "violations": rng.poisson(1 + 4 * i, 60).tolist(),
            "latencies_ms": rng.lognormal(np.log(12 + 10 * i), 0.5, 3000).tolist(),
            "pool_load": {
                p: rng.poisson(10 + 10 * j + 5 * i, 60).tolist() for j, p in enumerate(POOLS)
            },
        }
    return out


def images(doc: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', doc)]


@pytest.fixture(scope="module")
def full_doc(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    write_html_report(result(), path, timeline())
    return path.read_text()


def test_full_report_has_table_and_all_plots(full_doc: str) -> None:
    doc = full_doc
    assert doc.startswith("<!doctype html>") and doc.rstrip().endswith("</html>")
    assert "edge-cloud" in doc
    table = re.search(r'<table class="policies">.*?</table>', doc, re.S)
    assert table is not None
    assert table.group(0).count("<tr>") == 1 + len(POLICIES)
    assert '<td class="best">2.22 %</td>' in table.group(0)
    assert "p0 violation rate" in doc and "3.33 %" in doc
    pngs = images(doc)
    # summary, violations over time, CDF, pool share, pool load over time
    assert len(pngs) == 5
    assert all(p.startswith(b"\x89PNG") and len(p) > 5000 for p in pngs)
    assert 'class="note"' not in doc


def test_self_contained_no_external_references(full_doc: str) -> None:
    doc = full_doc
    assert not re.search(r'(src|href)="(?!data:)', doc)
    assert "http://" not in doc and "https://" not in doc


def test_without_timeline_only_table_and_summary_with_notes() -> None:
    doc = render_html_report(result())
    assert len(images(doc)) == 1
    for what in ("Violations over time", "Latency CDF", "Per-pool load"):
        assert f'<p class="note">{what}:' in doc


def test_pool_load_falls_back_on_workers_in_result_rows() -> None:
    res = result()
    for name in POLICIES:
        res["policies"][name]["workers"] = {"edge-agx-0": 10, "cloud-x86-0": 30}
    doc = render_html_report(res)
    assert len(images(doc)) == 2 and "Per-pool load:" not in doc


def test_compare_sim_result_has_both_runs_and_comparison() -> None:
    res = result()
    compare = {
        "scenario": "edge-cloud",
        "sim": res["policies"],
        "live": res["policies"],
        "meta": {"seed": 7, "duration_s": 20},
    }
    doc = render_html_report(compare, {"live": {"policies": {"synergai": {"violations": [1, 2]}}}})
    assert "seed 7 · duration_s 20" in doc
    assert "Simulator vs live" in doc and "<h2>sim</h2>" in doc and "<h2>live</h2>" in doc
    assert re.search(r'<table class="compare">(.*?)</table>', doc, re.S).group(1).count("<tr>") == 4  # type: ignore[union-attr]
    assert len(images(doc)) == 3  # two summaries and the live violations


@pytest.mark.parametrize(
    "res",
    [
        {"scenario": "s", "policies": {}},
        {"scenario": "s"},
        {"scenario": "<script>", "policies": {"x": {"violation_rate": None, "p99_ms": "n/a"}}},
    ],
)
def test_degenerate_inputs_still_render(res: dict[str, Any]) -> None:
    doc = render_html_report(res)
    assert "</html>" in doc and "<script>" not in doc


def test_timeline_with_partial_and_total_pool_load() -> None:
    tl = timeline()
    tl["policies"]["synergai"]["pool_load"] = {"edge-agx": 100, "cloud-gpu": 300}
    del tl["policies"]["round_robin"]["latencies_ms"]
    doc = render_html_report(result(), tl)
    assert len(images(doc)) == 5
