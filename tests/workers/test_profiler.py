from __future__ import annotations

from pathlib import Path

import pytest

from gateway.prediction.profiles import load_profile
from workers.profiler import Point, _input_specs, _metrics_guess, batch_sizes, render_profile


@pytest.mark.parametrize(
    ("top", "expected"),
    [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8]), (0, [1])],
)
def test_batch_sizes(top: int, expected: list[int]) -> None:
    assert batch_sizes(top) == expected


def _pt(batch: int, conc: int, p50: float, p99: float, over: float | None = 0.5) -> Point:
    return Point(batch, conc, 100, 0, 1.0, p50, p50 * 1.1, p99, 0.0, p50 - 1, over)


def test_render_profile_is_a_valid_profile(tmp_path: Path) -> None:
    pts = [_pt(1, 1, 10.0, 12.0), _pt(1, 4, 30.0, 40.0), _pt(4, 1, 20.0, 26.0, None)]
    text = render_profile("arch", "m", "python", 'cmd "q" at host', 4, pts)
    path = tmp_path / "arch" / "m.yaml"
    path.parent.mkdir()
    path.write_text(text)
    prof = load_profile(path)
    assert prof.max_batch == 4 and prof.source == 'cmd "q" at host'
    assert prof.p50(1) == pytest.approx(9.5) and prof.p99(1) == pytest.approx(11.5)
    assert prof.p50(4) == pytest.approx(20.0)  # no overhead known: raw client figure
    assert text.count("\n#     ") == 3  # every point in the comment table
    raw = render_profile("arch", "m", "", "", 4, pts, server_side=False)
    assert "1: {p50: 10.000, p99: 12.000}" in raw


def test_input_specs_and_metrics_guess() -> None:
    cfg = {"input": [{"name": "A", "optional": True}, {"name": "B", "optional": True}]}
    assert [i["name"] for i in _input_specs(cfg)] == ["A"]
    cfg = {"input": [{"name": "A", "optional": True}, {"name": "B"}]}
    assert [i["name"] for i in _input_specs(cfg)] == ["B"]
    assert _metrics_guess("http://127.0.0.1:8000") == "http://127.0.0.1:8002/metrics"
    assert _metrics_guess("localhost:9000/") == "http://localhost:9002/metrics"
