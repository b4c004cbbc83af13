"""``python -m loadtest.epp_pinned``: the rows and the summary it promises (figures not judged)."""

from __future__ import annotations

import os
import shutil

import pytest

from loadtest.epp_pinned import main, run_pinned

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    (os.cpu_count() or 1) < 2 or not shutil.which("taskset"), reason="needs taskset, 2 CPUs"
)
def test_rows_for_every_target_and_their_share_of_direct() -> None:
    before = os.sched_getaffinity(0)
    doc = run_pinned(concurrency=2, duration_s=0.3, rounds=1)
    targets = [r["target"] for r in doc["rows"]]
    assert targets == ["direct", "envoy", "envoy+epp", "envoy+epp (grpcio)"]
    assert all(r["rps"] > 0 and r["errors"] == 0 for r in doc["rows"])
    assert set(doc["summary"]) == {
        "envoy_rps_vs_direct", "envoy+epp_rps_vs_direct", "envoy+epp (grpcio)_rps_vs_direct"
    }  # fmt: skip
    assert os.sched_getaffinity(0) == before  # pinned with the clients, then given back


def test_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        main(["--rounds", "0"])
