"""Wild scenarios: fleets drawn from a design independent of :mod:`loadtest.sim.families`.

The scenario families and the random splits were the ground the routing rules were developed
on; these fleets come from other ideas, so they test whether the rules generalise. Scenario
``wild-S-NNN`` is :func:`wild_scenario(S, NNN) <loadtest.sim.wild.build.wild_scenario>`, built
in memory with its own profile library; ``python -m loadtest.sim.wild`` runs them (see
``--help``), ``--dump NAME DIR`` writes one as YAML for ``synergai simulate --scenario``.

What a scenario draws ("roofline + storylines"):

* hardware, :mod:`.hardware`: 2-6 architectures and 2-10 models; latency from a roofline
  (compute vs memory traffic) with a launch overhead, a parallel width, a memory capacity
  that bounds ``max_batch``, an engine-maturity factor and a jitter class;
* fleet, :mod:`.fleet`: a shape (hub, swarm, two-giants, zipf, tiny) of 2-500 workers in pools
  of 1-100 across near / metro / far regions; models placed by affinity; tenants with Zipf
  model popularity, 1-3 streams per model, SLO classes tight / medium / loose;
* load, :mod:`.load`: 0.2-1.5x the nominal capacity of a greedy fluid allocation, a total
  rate of 10-20,000 req/s;
* storylines, :mod:`.stories`: 0-3 incidents (miscalibration, drift, thermal sawtooth, noisy
  neighbour, rolling restart, worker crash, pool or zone outage, brownout).

It began as a helper's scratch generator (``gen.py``, seeds 1-3 were its first 450
scenarios); the port draws the same numbers in the same order, so ``wild-3-045`` here is the
scenario that the rule ``HOPELESS`` of commit c63fbc6 was made for.
"""

from loadtest.sim.wild.build import parse_name, wild_name, wild_scenario, wild_seed

__all__ = ["parse_name", "wild_name", "wild_scenario", "wild_seed"]
