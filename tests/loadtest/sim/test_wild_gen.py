"""The wild generator (loadtest/sim/wild/): pure, valid, within its bounds, and dumpable."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from gateway.scenario import Scenario, load_scenario
from loadtest.sim.families.export import write_scenario
from loadtest.sim.runner import run_scenario
from loadtest.sim.wild import parse_name, wild_name, wild_scenario
from loadtest.sim.wild.__main__ import main
from loadtest.sim.wild.bench import run_wild
from loadtest.sim.wild.fleet import SHAPES, split_workers

# a spread over seeds, shapes and storylines
SAMPLE = [(1, 0), (2, 63), (3, 45), (3, 62), (4, 132), (5, 10)]


def _profiles(sc: Scenario) -> list[tuple[object, ...]]:
    book = sc.profile_book
    return sorted((p.arch, p.model, p.max_batch, p.points) for p in book) + sorted(
        (a, i.kind, i.notes) for a, i in book.archs.items()
    )


def test_same_seed_and_index_same_scenario() -> None:
    a, ia = wild_scenario(3, 45)
    b, ib = wild_scenario(3, 45)
    assert a.model_dump() == b.model_dump()
    assert _profiles(a) == _profiles(b)
    assert ia == ib
    assert wild_scenario(3, 46)[0].model_dump() != a.model_dump()


def test_draws_as_the_scratch_generator_did() -> None:
    """Pinned from the generator's first runs (the scenarios of tests/loadtest/sim/test_wild.py
    and the worst held-out case): a change in the order of draws shows here."""
    pins = {  # name: shape, workers, util, total req/s, storylines (from gen.py's index.json)
        "wild-3-045": (
            "two-giants",
            242,
            0.825,
            224.9,
            ["noisy@near-x860-0", "rolling@near-igpu1-1"],
        ),
        "wild-3-062": ("swarm", 81, 0.401, 270.32, ["noisy@far-dsp5-5", "miscal@far-fpx1-1"]),
        "wild-2-063": ("tiny", 6, 0.341, 1521.13, []),
        "wild-4-132": ("zipf", 47, 0.98, 245.85, ["wcrash@metro-risc0-3", "drift@near-x862-2"]),
    }
    for name, pin in pins.items():
        sc, info = wild_scenario(*parse_name(name))
        assert sc.name == name
        assert (info["shape"], info["workers"], info["util"], info["total_rps"]) == pin[:4]
        assert info["stories"] == pin[4]
        s, i = parse_name(name)
        assert sc.seed == s * 100_000 + i


def test_names() -> None:
    assert wild_name(3, 45) == "wild-3-045" and parse_name("wild-3-045") == (3, 45)
    with pytest.raises(ValueError, match="wild-SEED-INDEX"):
        parse_name("sparse-104000")


@pytest.mark.parametrize(("seed", "index"), SAMPLE)
def test_valid_and_simulates(seed: int, index: int) -> None:
    sc, info = wild_scenario(seed, index)
    served = {m for p in sc.pools for m in p.models}
    assert {w.model for w in sc.workload} <= served
    for p in sc.pools:
        for m in p.models:
            assert sc.profile_book.get(p.arch, m) is not None
    assert 10.0 <= sc.duration_s <= 30.0 and info["streams"] == len(sc.workload)
    short = sc.model_copy(update={"duration_s": 1.0})
    doc = run_scenario(short, ["synergai", "profile_static"]).document["policies"]
    for res in doc.values():
        assert res["requests"] > 0 and 0.0 <= res["violation_rate"] <= 1.0


def test_scale_bounds() -> None:
    shapes = set()
    for seed in (1, 2, 3, 4, 5):
        for index in range(0, 150, 19):
            sc, info = wild_scenario(seed, index)
            assert 2 <= info["workers"] <= 500, info
            assert all(1 <= p.workers <= 100 and p.models for p in sc.pools)
            assert info["workers"] == sum(p.workers for p in sc.pools)
            assert 10.0 <= info["total_rps"] <= 20_000 * 1.5
            shapes.add(info["shape"])
    assert len(shapes) >= 4


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("total", [2, 7, 150, 500])
def test_split_workers(shape: str, total: int) -> None:
    import numpy as np

    sizes = split_workers(np.random.default_rng(total), total, shape)
    assert sizes and all(1 <= s <= 100 for s in sizes)
    assert sum(sizes) <= total + len(sizes)


def test_dump_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dump", "wild-4-132", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "wild-4-132.yaml"
    loaded = load_scenario(path)
    sc, _ = wild_scenario(4, 132)
    assert loaded.model_dump(exclude={"profiles"}) == sc.model_dump(exclude={"profiles"})
    assert _profiles(loaded) == _profiles(sc)
    # the second dump of the same scenario writes the same files
    again = tmp_path / "again"
    write_scenario(sc, again)
    assert (again / "wild-4-132.yaml").read_text() == path.read_text()


def test_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--only", "wild-4-036", "--traces", "2", "--jobs", "1", "--json", "--top", "3"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    (row,) = doc["scenarios"]
    assert row["scenario"] == "wild-4-036" and set(row["violation_pct"]) == {
        "synergai",
        "profile_static",
        "oracle",
    }
    assert all(len(v) == 2 for v in row["per_trace"].values())
    assert doc["summary"]["count"] == 1 and "mean violation %" in err
    assert doc["summary"]["worse_0_5pt"] + doc["summary"]["better_0_5pt"] <= 1


def test_a_scenario_past_max_s_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    def stuck(*_args: object, **_kwargs: object) -> None:
        time.sleep(30)

    monkeypatch.setattr("loadtest.sim.wild.bench.run_scenario", stuck)
    before = signal.getsignal(signal.SIGALRM)
    row = run_wild(4, 36, ("profile_static",), traces=1, max_s=1)
    assert "skipped" in row and "violation_pct" not in row and row["wall_s"] < 10
    assert signal.getsignal(signal.SIGALRM) is before  # pytest-timeout's, if it set one
    if before not in (signal.SIG_DFL, signal.SIG_IGN, None):
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0  # its timer is running again
