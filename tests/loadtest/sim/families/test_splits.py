from __future__ import annotations

import pytest

from loadtest.sim.families import FAMILIES, member, split_members


def test_splits_are_disjoint_and_stable() -> None:
    dev = split_members("dev")
    test = split_members("test")
    assert len(dev) == len(test) == 30 * len(FAMILIES)
    assert not {s for _, s in dev} & {s for _, s in test}
    assert split_members("dev", ["sparse"], 3) == [(f, s) for f, s in dev if f == "sparse"][:3]


def test_member_by_name() -> None:
    fam, seed = split_members("test", ["flapping"], 1)[0]
    d = member(f"{fam}-{seed}")
    assert (d.family, d.seed, d.scenario.name) == (fam, seed, f"{fam}-{seed}")


@pytest.mark.parametrize("bad", ["nope-1", "scale", "scale-x", "random-5000"])
def test_member_rejects_other_names(bad: str) -> None:
    with pytest.raises(ValueError):
        member(bad)


def test_unknown_family_or_count() -> None:
    with pytest.raises(KeyError):
        split_members("dev", ["nope"])
    with pytest.raises(ValueError):
        split_members("dev", count=0)


def test_several_traces_pool_their_rates_and_the_first_is_the_members_own() -> None:
    """``traces=1`` is the member's own trace; more traces pool violations over requests."""
    from loadtest.sim.families.splits import evaluate

    one = evaluate("sparse", 104000, ("profile_static", "synergai"))
    three = evaluate("sparse", 104000, ("profile_static", "synergai"), traces=3)
    per = three["violation_rate_per_trace"]
    assert three["traces"] == 3 and "traces" not in one
    assert per["synergai"][0] == one["violation_rate"]["synergai"]  # trace 0: the member's own
    assert three["requests"] > 2 * one["requests"]
    for name, rates in per.items():
        assert min(rates) <= three["violation_rate"][name] <= max(rates)
