"""Scenario loading: validation errors name file, line and key; time_scale semantics."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.scenario import FormatError, load_scenario

PROFILE = """\
arch: {arch}
model: {model}
engine: test
source: unit test
max_batch: 8
latency_ms:
  1: {{p50: {p50}, p99: {p99}}}
  8: {{p50: {p50_8}, p99: {p99_8}}}
"""

GOOD = """\
name: t
duration_s: 10
seed: 3
time_scale: 2.0
profiles: profs
pools:
  - name: edge
    arch: slow
    workers: 2
    models: [m1]
    speed: [{at_s: 0, factor: 1.0}, {at_s: 4, factor: 2.0}]
  - name: cloud
    arch: fast
    rtt_ms: 10
    models: [m1, m2]
workload:
  - model: m1
    rate_rps: 20
    slo_ms: 50
  - model: m2
    rate_rps: 5
    arrival: bursty
    burst: {on_s: 1, off_s: 2, factor: 3}
    slo_ms: 30
    priority: 1
faults:
  - {at_s: 5, pool: edge, worker: 1, kind: crash, for_s: 2}
"""


def _write(tmp: Path, text: str) -> Path:
    profs = tmp / "profs"
    for arch, p50 in (("slow", 20.0), ("fast", 2.0)):
        (profs / arch).mkdir(parents=True, exist_ok=True)
        for model in ("m1", "m2"):
            (profs / arch / f"{model}.yaml").write_text(
                PROFILE.format(
                    arch=arch, model=model, p50=p50, p99=p50 * 2, p50_8=p50 * 4, p99_8=p50 * 8
                )
            )
    (profs / "archs.yaml").write_text(
        "slow: {kind: edge, rtt_ms: 1.5}\nfast: {kind: cloud, rtt_ms: 20}\n"
    )
    path = tmp / "sc.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_scenario_loads_and_resolves_rtt(tmp_path: Path) -> None:
    sc = load_scenario(_write(tmp_path, GOOD))
    assert [p.name for p in sc.pools] == ["edge", "cloud"]
    assert sc.pools[0].rtt_ms == 1.5  # from archs.yaml
    assert sc.pools[1].rtt_ms == 10  # explicit wins
    assert sc.pools[0].speed_at(3.9) == 1.0
    assert sc.pools[0].speed_at(4.0) == 2.0
    assert sc.profile_book.get("slow", "m1") is not None


def test_time_scale_multiplies_durations_and_divides_rates(tmp_path: Path) -> None:
    sc = load_scenario(_write(tmp_path, GOOD)).scaled()
    assert sc.time_scale == 1.0
    assert sc.duration_s == 20
    assert sc.workload[0].rate_rps == 10
    assert sc.workload[0].slo_ms == 100
    assert sc.workload[1].burst is not None and sc.workload[1].burst.on_s == 2
    assert sc.pools[1].rtt_ms == 20
    assert sc.pools[0].speed_at(7.9) == 1.0 and sc.pools[0].speed_at(8.0) == 2.0
    assert sc.faults[0].at_s == 10 and sc.faults[0].for_s == 4
    prof = sc.profile_book.get("slow", "m1")
    assert prof is not None and prof.p50(1) == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (
            "    workers: 2\n",
            "    workers: 2\n    wrokers: 3\n",
            r"sc\.yaml:10: .*unknown key 'wrokers'",
        ),
        ("    rate_rps: 20\n", "    rate_rps: -1\n", r"sc\.yaml:18: workload\[0\]\.rate_rps"),
        ("    slo_ms: 50\n", "    slo_ms: 0\n", r"sc\.yaml:19: workload\[0\]\.slo_ms"),
        ("  - model: m2\n", "  - model: nope\n", r"sc\.yaml:20: .*no pool serves 'nope'"),
        (
            "    models: [m1]\n",
            "    models: [m1, m9]\n",
            r"sc\.yaml:10: .*no profile for model 'm9'",
        ),
        ("pool: edge, worker: 1", "pool: edge, worker: 7", r"sc\.yaml:27: .*has 2 workers"),
        ("- name: cloud", "- name: edge", r"sc\.yaml:12: .*duplicate 'edge'"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, old: str, new: str, expect: str) -> None:
    assert old in GOOD
    with pytest.raises(FormatError, match=expect):
        load_scenario(_write(tmp_path, GOOD.replace(old, new, 1)))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"sc\.yaml:4: invalid YAML"):
        load_scenario(_write(tmp_path, "name: t\nduration_s: 1\npools: [\n  {a: }}\n"))


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")
