"""The policy registry: one line per policy, no if/elif (DESIGN.md §3 names are a contract)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.prediction.profiles import ProfileBook
from gateway.routing.policies.least_outstanding import LeastOutstanding
from gateway.routing.policies.oracle import Oracle
from gateway.routing.policies.p2c import PowerOfTwo
from gateway.routing.policies.peak_ewma import PeakEwma
from gateway.routing.policies.profile_static import ProfileStatic
from gateway.routing.policies.random_choice import RandomChoice
from gateway.routing.policies.round_robin import RoundRobin
from gateway.routing.policies.synergai import SynergAI
from gateway.routing.types import Policy

__all__ = ["PolicySpec", "make_policy", "policy_names"]


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """How to build one policy.

    Attributes:
        name: the registry name.
        build: ``(profiles, seed) -> Policy``; a fresh, independent instance each call.
        sim_only: only the simulator can run it (it needs the simulator's truth).
    """

    name: str
    build: Callable[[ProfileBook, int | None], Policy]
    sim_only: bool = False


REGISTRY: tuple[PolicySpec, ...] = (
    PolicySpec("round_robin", lambda book, seed: RoundRobin()),
    PolicySpec("random", lambda book, seed: RandomChoice()),
    PolicySpec("least_outstanding", lambda book, seed: LeastOutstanding()),
    PolicySpec("p2c", lambda book, seed: PowerOfTwo()),
    PolicySpec("peak_ewma", lambda book, seed: PeakEwma()),
    PolicySpec("profile_static", lambda book, seed: ProfileStatic()),
    PolicySpec("synergai", lambda book, seed: SynergAI(seed=seed or 0)),
    PolicySpec("oracle", lambda book, seed: Oracle(), sim_only=True),
)
"""Every policy, in the order tables list them."""


def policy_names(include_sim_only: bool = False) -> list[str]:
    """Registered policy names (``oracle`` only with ``include_sim_only``)."""
    return [p.name for p in REGISTRY if include_sim_only or not p.sim_only]


def make_policy(name: str, profiles: ProfileBook, seed: int | None = None) -> Policy:
    """A fresh policy called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    for spec in REGISTRY:
        if spec.name == name:
            return spec.build(profiles, seed)
    known = ", ".join(policy_names(include_sim_only=True))
    raise ValueError(f"unknown policy {name!r}; known: {known}")
