from __future__ import annotations

import numpy as np
import pytest

from loadtest.sim.families.catalog import CLASSES, draw_catalog


@pytest.mark.parametrize(
    ("seed", "n_arch", "n_model"),
    [(s, a, m) for s in range(6) for a, m in ((1, 1), (2, 2), (4, 3), (6, 5))],
)
def test_catalog_shapes(seed: int, n_arch: int, n_model: int) -> None:
    cat = draw_catalog(np.random.default_rng(seed), n_arch, n_model)
    assert len(cat.archs) == n_arch and len(cat.models) == n_model
    for m in cat.models:  # every model has a home, every arch serves something
        assert any(cat.book.get(a, m) is not None for a in cat.archs)
    for a in cat.archs:
        assert cat.serves(a)
        cls = CLASSES[cat.arch_class[a]]
        for m in cat.serves(a):
            prof = cat.book.get(a, m)
            assert prof is not None
            assert cls.max_batch[0] <= prof.max_batch <= cls.max_batch[1]
            assert prof.points[0].batch == 1 and prof.points[-1].batch == prof.max_batch
            p50s = [p.p50 for p in prof.points]
            assert p50s == sorted(p50s)  # bigger batches take longer
            assert all(p.p99 >= 1.01 * p.p50 * 0.999 for p in prof.points)
            tail = prof.points[0].p99 / prof.points[0].p50
            assert cls.tail[0] * 0.99 <= tail <= cls.tail[1] * 1.01


@pytest.mark.parametrize("seed", range(40))
def test_no_architecture_is_fastest_for_everything(seed: int) -> None:
    cat = draw_catalog(np.random.default_rng(seed), 3, 3)
    winners = set()
    contested = 0
    for m in cat.models:
        have = [(cat.book.get(a, m).p50(1), a) for a in cat.archs if cat.book.get(a, m)]  # type: ignore[union-attr]
        winners.add(min(have)[1])
        contested += len(have) > 1
    if contested:
        assert len(winners) > 1


def test_catalog_is_deterministic_and_scales() -> None:
    a = draw_catalog(np.random.default_rng(7), 4, 3)
    b = draw_catalog(np.random.default_rng(7), 4, 3)
    assert a.book.profiles == b.book.profiles
    s = a.scaled(2.0)
    for key, prof in a.book.profiles.items():
        assert s.book.profiles[key].p50(1) == pytest.approx(2.0 * prof.p50(1))
