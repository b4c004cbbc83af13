"""Checks on the shipped profile library (``profiles/``), the contract of DESIGN.md §5.

Pure Python: reads the YAML with PyYAML and checks format, physics (tails, batching) and the
heterogeneity the project promises (no architecture fastest for every model; edge close, cloud
far). Every file is loaded once at import, so the whole module runs in well under a second.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
PROFILE_KEYS = {"arch", "model", "engine", "source", "max_batch", "latency_ms"}
POINT_KEYS = {"p50", "p99"}
ARCH_KEYS = {"kind", "rtt_ms", "notes"}
EDGE_RTT_MS = (0.5, 3.0)
CLOUD_RTT_MS = (10.0, 40.0)
BATCH1_P50_MS = (0.2, 500.0)


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


PROFILE_PATHS = sorted(PROFILES.glob("*/*.yaml"))
PROFILE_DATA: dict[Path, Any] = {p: _load(p) for p in PROFILE_PATHS}
ARCHS: dict[str, Any] = _load(PROFILES / "archs.yaml")
IDS = [f"{p.parent.name}/{p.stem}" for p in PROFILE_PATHS]


def _points(data: dict[str, Any]) -> list[tuple[int, float, float]]:
    """``(batch, p50, p99)`` sorted by batch."""
    return sorted((b, v["p50"], v["p99"]) for b, v in data["latency_ms"].items())


def _batch1_p50() -> dict[str, dict[str, float]]:
    """``{model: {arch: p50 at batch 1}}``."""
    out: dict[str, dict[str, float]] = {}
    for path, data in PROFILE_DATA.items():
        out.setdefault(path.stem, {})[path.parent.name] = data["latency_ms"][1]["p50"]
    return out


def test_library_size() -> None:
    archs = {p.parent.name for p in PROFILE_PATHS}
    models = {p.stem for p in PROFILE_PATHS}
    assert len(archs) >= 5, archs
    assert len(models) >= 5, models


def test_archs_yaml_matches_directories() -> None:
    dirs = {d.name for d in PROFILES.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))}
    assert isinstance(ARCHS, dict)
    assert set(ARCHS) == dirs


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_arch_entry(arch: str) -> None:
    entry = ARCHS[arch]
    assert set(entry) == ARCH_KEYS
    assert entry["kind"] in ("edge", "cloud")
    assert isinstance(entry["notes"], str) and entry["notes"].strip()
    lo, hi = EDGE_RTT_MS if entry["kind"] == "edge" else CLOUD_RTT_MS
    assert lo <= entry["rtt_ms"] <= hi, (arch, entry["rtt_ms"])
    assert any((PROFILES / arch).glob("*.yaml")), f"{arch} has no profiles"


def test_edge_is_closer_than_cloud() -> None:
    edge = [a["rtt_ms"] for a in ARCHS.values() if a["kind"] == "edge"]
    cloud = [a["rtt_ms"] for a in ARCHS.values() if a["kind"] == "cloud"]
    assert edge and cloud
    assert max(edge) < min(cloud)


@pytest.mark.parametrize("path", PROFILE_PATHS, ids=IDS)
def test_profile_format(path: Path) -> None:
    data = PROFILE_DATA[path]
    assert isinstance(data, dict)
    assert set(data) == PROFILE_KEYS
    assert data["arch"] == path.parent.name
    assert data["model"] == path.stem
    for key in ("engine", "source"):
        assert isinstance(data[key], str) and data[key].strip(), key
    assert isinstance(data["max_batch"], int) and data["max_batch"] >= 1
    lat = data["latency_ms"]
    assert isinstance(lat, dict) and 1 in lat
    for batch, point in lat.items():
        assert isinstance(batch, int) and batch >= 1
        assert set(point) == POINT_KEYS
        assert all(isinstance(v, int | float) for v in point.values())
    assert data["max_batch"] >= max(lat)


@pytest.mark.parametrize("path", PROFILE_PATHS, ids=IDS)
def test_tail_above_median(path: Path) -> None:
    for batch, p50, p99 in _points(PROFILE_DATA[path]):
        assert 0 < p50 < p99, (batch, p50, p99)


@pytest.mark.parametrize("path", PROFILE_PATHS, ids=IDS)
def test_batching_is_monotone(path: Path) -> None:
    """Batch latency never falls as the batch grows; latency per item never rises."""
    pts = _points(PROFILE_DATA[path])
    for (b0, p50_0, p99_0), (b1, p50_1, p99_1) in pairwise(pts):
        assert p50_1 >= p50_0 and p99_1 >= p99_0, (b0, b1)
        assert p50_1 / b1 <= p50_0 / b0 and p99_1 / b1 <= p99_0 / b0, (b0, b1)


@pytest.mark.parametrize("path", PROFILE_PATHS, ids=IDS)
def test_batch1_latency_in_range(path: Path) -> None:
    lo, hi = BATCH1_P50_MS
    assert lo <= PROFILE_DATA[path]["latency_ms"][1]["p50"] <= hi


def test_no_arch_fastest_for_every_model() -> None:
    fastest = {m: min(by_arch, key=by_arch.__getitem__) for m, by_arch in _batch1_p50().items()}
    assert len(set(fastest.values())) >= 2, fastest
