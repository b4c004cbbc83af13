"""Profile loading, interpolation and the log-normal truth model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gateway.prediction.profiles import (
    LatencyPoint,
    Profile,
    default_profiles_dir,
    load_profiles,
)
from gateway.yamlio import FormatError

PROF = Profile(
    "a",
    "m",
    16,
    (LatencyPoint(1, 10.0, 20.0), LatencyPoint(4, 16.0, 30.0), LatencyPoint(8, 24.0, 40.0)),
)


@pytest.mark.parametrize(
    ("batch", "p50", "p99"),
    [
        (1, 10.0, 20.0),
        (2, 12.0, 23.333),
        (4, 16.0, 30.0),
        (6, 20.0, 35.0),
        (8, 24.0, 40.0),
        (12, 32.0, 50.0),
    ],
)
def test_interpolation(batch: int, p50: float, p99: float) -> None:
    assert PROF.p50(batch) == pytest.approx(p50, rel=1e-3)
    assert PROF.p99(batch) == pytest.approx(p99, rel=1e-3)


def test_supports_refuses_above_max_batch() -> None:
    assert PROF.supports(16) and not PROF.supports(17) and not PROF.supports(0)


def test_lognormal_fit_reproduces_p50_and_p99() -> None:
    rng = np.random.default_rng(1)
    xs = np.array([PROF.sample(1, rng) for _ in range(40_000)])
    assert np.percentile(xs, 50) == pytest.approx(10.0, rel=0.03)
    assert np.percentile(xs, 99) == pytest.approx(20.0, rel=0.06)
    mu, sigma = PROF.lognormal(1)
    assert PROF.mean(1) == pytest.approx(math.exp(mu + sigma**2 / 2))
    assert xs.mean() == pytest.approx(PROF.mean(1), rel=0.02)


def test_scaled() -> None:
    assert PROF.scaled(3.0).p99(4) == pytest.approx(90.0)


def test_project_library_loads() -> None:
    book = load_profiles(default_profiles_dir())
    assert len(book.arch_names()) >= 5 and len(book.models()) >= 5
    assert all(book.get(p.arch, p.model) is p for p in book)


def test_path_mismatch_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "m.yaml").write_text(
        "arch: y\nmodel: m\nmax_batch: 1\nlatency_ms:\n  1: {p50: 1, p99: 2}\n"
    )
    with pytest.raises(FormatError, match=r"m\.yaml:1: .*do not match"):
        load_profiles(tmp_path)


def test_p99_below_p50_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "m.yaml").write_text(
        "arch: x\nmodel: m\nmax_batch: 1\nlatency_ms:\n  1: {p50: 3, p99: 2}\n"
    )
    with pytest.raises(FormatError, match="p99 < p50"):
        load_profiles(tmp_path)
