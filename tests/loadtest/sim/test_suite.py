from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.scenario import load_scenario
from loadtest.sim.families.report import no_harm
from loadtest.sim.suite import main


def test_families_split_json_and_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--split", "dev", "--family", "sparse", "--count", "2", "--jobs", "2", "--json"]) == 0
    )
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["split"] == "dev"
    names = [r["scenario"] for r in doc["scenarios"]]
    assert names == ["sparse-104000", "sparse-104001"]
    for r in doc["scenarios"]:
        assert set(r["violation_rate"]) == {
            "round_robin", "least_outstanding", "p2c", "peak_ewma", "profile_static", "synergai",
            "oracle",
        }  # fmt: skip
        assert r["requests"] > 0 and r["info"]["workers"] >= 3
    fam = doc["summary"]["families"]["sparse"]
    assert fam["count"] == 2
    assert fam["no_harm"] == sum(
        no_harm(r["violation_rate"]["synergai"], r["violation_rate"]["profile_static"])
        for r in doc["scenarios"]
    )
    assert "[   2/2]" in err and "no-harm" in err and "worst 20" in err


def test_dump_writes_a_loadable_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dump", "overload-201004", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip())
    sc = load_scenario(path)
    assert sc.name == "overload-201004" and len({w.priority for w in sc.workload}) >= 2


@pytest.mark.parametrize(
    ("syn", "static", "ok"),
    [
        (0.0, 0.0, True),
        (0.0009, 0.0, True),  # both floored at 0.1 %
        (0.002, 0.0, False),  # 2x the floor
        (0.105, 0.10, True),  # +0.5 point, under 1.1x
        (0.106, 0.10, False),  # +0.6 point
        (0.012, 0.01, False),  # +0.2 point but 1.2x
    ],
)
def test_no_harm_rule(syn: float, static: float, ok: bool) -> None:
    assert no_harm(syn, static) is ok


def test_traces_flag_pools_members_over_traces(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--split", "dev", "--family", "sparse", "--count", "1", "--traces", "2", "--json"]
    assert main([*argv, "--policy", "profile_static", "--policy", "synergai"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["traces"] == 2
    (row,) = doc["scenarios"]
    assert row["traces"] == 2 and len(row["violation_rate_per_trace"]["synergai"]) == 2
    with pytest.raises(SystemExit):
        main(["--traces", "0"])
