"""Fleets built by an independent generator, not the families the rules were developed on.

A helper wrote its own generator from other ideas (a roofline hardware model, hub / swarm /
two-giants / Zipf fleet shapes, Zipf model popularity, incident stories such as rolling
restarts, thermal sawtooths and zone outages) and ran 450 of its scenarios, two traces each,
to find where ``synergai`` loses to ``profile_static`` (earliest completion). The generator is
now :mod:`loadtest.sim.wild` (same draws); the members here are the cases a fix was made for,
built in memory with their own profiles; each runs on its own trace, as the generator's
runner did.
"""

from __future__ import annotations

import pytest

from loadtest.sim.families.report import no_harm
from loadtest.sim.runner import run_scenario
from loadtest.sim.wild import parse_name, wild_scenario


def _rates(name: str) -> dict[str, float]:
    run = run_scenario(wild_scenario(*parse_name(name))[0], ["profile_static", "synergai"])
    return {p: x["violation_rate"] for p, x in run.document["policies"].items()}


@pytest.mark.parametrize(
    "name",
    [
        "wild-3-062",  # a pool truly 1.78x slower than profiled: coin flips shed (9.8 % vs 7.9 %)
        "wild-2-063",  # a 1.39 ms SLO about equal to rtt + mean: coin flips shed (9.9 % vs 8.2 %)
    ],
)
def test_no_harm_on_coin_flip_slos(name: str) -> None:
    v = _rates(name)
    assert no_harm(v["synergai"], v["profile_static"]), v


def test_little_harm_where_the_overflow_pool_is_a_coin_flip() -> None:
    """242 workers; a 1.4 s SLO fits only a 21-worker pool and the overflow pool's median is
    the SLO itself. synergai shed the overflow on free slots: 44.9 % violations against 35.0 %
    for EC. Served there now (only the hopeless are shed on a free slot): 35.8 %. The 0.9 point
    left is guarded at 1 point."""
    v = _rates("wild-3-045")
    assert v["synergai"] <= v["profile_static"] + 0.01, v


def test_little_harm_where_each_worker_learning_alone_ratcheted_up() -> None:
    """357 workers; a busy pool of 98 four-slot workers with an exact profile takes bursts of
    6.6x. Each worker learning its own correction, earliest completion re-measured only the
    ones that read fast, the others' factors froze at 1.2-1.4, the bursts booked them a quarter
    too long: 39.9 % violations against 34.6 % for EC. Pooled corrections (a worker reads its
    pool's until its own departs): 35.7 %. Guarded at 1.5 points."""
    v = _rates("wild-5-111")
    assert v["synergai"] <= v["profile_static"] + 0.015, v


def test_little_harm_after_each_recovery_of_an_idle_worker() -> None:
    """Two workers; one crashes, the other (four slots) is slowed 2-7x six times. After each
    slowdown the model's requests were shed as hopeless at its free slots until the last slow
    sample aged past the probe gap, while EC served them on time: 61.3 % violations against
    55.9 % for EC on this trace. An idle worker now serves them (a shed there spares nobody,
    and the answer corrects the lagging prediction): 56.4 %. Guarded at 1 point."""
    v = _rates("wild-6-060")
    assert v["synergai"] <= v["profile_static"] + 0.01, v
