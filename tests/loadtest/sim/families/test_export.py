from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.scenario import load_scenario
from loadtest.sim.families import build_scenario, write_scenario
from loadtest.sim.runner import run_scenario


def test_written_scenario_loads_back_the_same(tmp_path: Path) -> None:
    sc = build_scenario("faults", 3).scenario
    path = write_scenario(sc, tmp_path)
    assert path == tmp_path / "faults-3.yaml"
    assert (tmp_path / "faults-3-profiles" / "archs.yaml").is_file()
    back = load_scenario(path)
    assert back.model_dump(exclude={"profiles"}) == sc.model_dump(exclude={"profiles"})
    assert dict(back.profile_book.profiles) == dict(sc.profile_book.profiles)
    short = {"duration_s": 2.0}
    a = run_scenario(sc.model_copy(update=short).with_profiles(sc.profile_book), ["synergai"])
    b = run_scenario(back.model_copy(update=short).with_profiles(back.profile_book), ["synergai"])
    assert np.array_equal(a.results["synergai"].worker, b.results["synergai"].worker)
    assert a.document["policies"] == b.document["policies"]
