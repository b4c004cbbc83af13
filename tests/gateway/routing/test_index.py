"""PoolIndex: the cached best positions always equal a full scan (the first least key)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.prediction.model import PredictorConfig
from gateway.prediction.profiles import LatencyPoint, Profile
from gateway.routing.index import PoolIndex, _first_least
from gateway.routing.state import WorkerState
from gateway.routing.types import WorkerInfo

PROFILE = Profile("a", "m", 4, (LatencyPoint(1, 2.0, 3.0),))


def _scan(keys: list[float]) -> int:
    if not keys or min(keys) == math.inf:
        return -1
    return keys.index(min(keys))


# keys from a small set so ties are frequent; inf is "unavailable"
KEYS = st.sampled_from([0.0, 1.0, 1.0, 2.5, 3.0, math.inf])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 7), KEYS, KEYS),
        st.tuples(st.just("remove"), st.integers(0, 7), KEYS, KEYS),
        st.tuples(st.just("add"), st.just(0), KEYS, KEYS),
        st.tuples(st.just("best"), st.just(0), KEYS, KEYS),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 8), ops=OPS)
def test_cached_best_equals_a_scan(n: int, ops: list[tuple[str, int, float, float]]) -> None:
    idx = PoolIndex("p", "a", "m", PROFILE)
    info = WorkerInfo("w", "p", "a", ("m",))
    states = [WorkerState(i, info, {"m": PROFILE}, PredictorConfig()) for i in range(n + 60)]
    for s in states[:n]:
        idx.add(s)
    for op, pos, key, base in ops:
        size = len(idx.keys)
        if op == "add":
            idx.add(states[size])
        elif op == "best":
            pass
        elif size:
            if op == "put":
                idx.put(pos % size, key, base)
            else:
                idx.remove(pos % size)
        assert idx.best_pos() == _scan(idx.keys)
        assert idx.best_base_pos() == _scan(idx.bases)
        b = idx.best()
        assert b is (None if _scan(idx.keys) < 0 else idx.members[_scan(idx.keys)])


def test_rising_best_is_rescanned() -> None:
    idx = PoolIndex("p", "a", "m", PROFILE)
    info = WorkerInfo("w", "p", "a", ("m",))
    for i in range(3):
        idx.add(WorkerState(i, info, {"m": PROFILE}, PredictorConfig()))
    for pos, k in enumerate([5.0, 1.0, 3.0]):
        idx.put(pos, k, k)
    assert idx.best_pos() == 1
    idx.put(1, 4.0, 4.0)  # the best rises above another worker
    assert idx.best_pos() == 2
    idx.put(0, 3.0, 3.0)  # a tie at an earlier position wins, as with list.index
    assert idx.best_pos() == 0
    assert idx.mean_1 == PROFILE.mean(1) and idx.p99_1 == 3.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, 1.0, 2.0, math.inf, math.nan]), min_size=1))
def test_first_least_is_index_of_min(keys: list[float]) -> None:
    """The compiled loop and the builtins agree, ties, signed zeros and NaN included."""
    assert _first_least(keys) == keys.index(min(keys))
