from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.sim.speed import main

DEMO = Path(__file__).resolve().parents[3] / "loadtest" / "scenarios" / "demo.yaml"


def test_speed_prints_rate_and_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DEMO), "round_robin", "--split"]) == 0
    out = capsys.readouterr().out
    assert "req/s wall" in out and "engine + view" in out


def test_speed_usage() -> None:
    assert main([]) == 2
