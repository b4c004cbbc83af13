from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.sim.scale_sweep import SWEEP, main, sweep_scenarios

BURSTS = Path(__file__).resolve().parents[3] / "loadtest" / "scenarios" / "issue15" / "bursts.yaml"


def test_sweep_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--k",
        "1",
        "2",
        "--scenario",
        str(BURSTS),
        "--duration",
        "2",
        "--jobs",
        "1",
        "--k-ref",
        "2",
    ]
    assert main([*argv, "--policy", "profile_static", "--policy", "synergai", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["mode"] == "scale_sweep" and doc["ks"] == [1, 2]
    (row,) = doc["scenarios"]
    assert row["scenario"] == "issue15-bursts" and row["workers"] == 6
    assert set(row["rates"]) == {"profile_static", "synergai"}
    assert set(row["rates"]["synergai"]) == {"1", "2"}
    assert "k=2" in err and "worse at scale" in err


def test_default_sweep_is_small() -> None:
    scs = sweep_scenarios()
    assert [s.name for s in scs] == [f"{f}-{s}" for f, s in SWEEP]
    for s in scs:
        assert 3 <= sum(p.workers for p in s.pools) <= 10 and s.duration_s == 6.0
