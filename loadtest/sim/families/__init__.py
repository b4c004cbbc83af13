"""Scenario families: generated fleets nobody tuned on, to judge routing policies.

Independent of :mod:`loadtest.sim.randomgen` (its own hardware library, load definition,
traffic and fault plans). :func:`build_scenario` draws one scenario of a family
(:data:`FAMILIES`) from a seed; :func:`split_members` lists a split's members;
:func:`evaluate` runs one under every policy; :func:`replicate` scales a fleet and its
traffic ``k`` times; :func:`write_scenario` writes a scenario and its profiles as YAML.
The suite: ``python -m loadtest.sim.suite --split dev``; the scale sweep:
``python -m loadtest.sim.scale_sweep``.
"""

from loadtest.sim.families.build import Drawn, build_scenario
from loadtest.sim.families.export import write_scenario
from loadtest.sim.families.knobs import FAMILIES, Knobs
from loadtest.sim.families.replicate import replicate
from loadtest.sim.families.splits import POLICIES, SPLITS, evaluate, member, split_members

__all__ = [
    "FAMILIES",
    "POLICIES",
    "SPLITS",
    "Drawn",
    "Knobs",
    "build_scenario",
    "evaluate",
    "member",
    "replicate",
    "split_members",
    "write_scenario",
]
