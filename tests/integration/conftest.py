"""Fixtures for integration tests that start real servers.

``triton_fleet`` (module-scoped factory): ``triton_fleet(scenario_path_or_obj, **fleet_kwargs)``
starts a real emulated Triton fleet (see ``workers.fleet.Fleet``) and returns its
``list[WorkerSpec]``; ``triton_fleet.last`` is the ``Fleet`` (crash, slowdown, clock). Every
fleet is stopped at the end of the module and the teardown fails if any process it started is
still running. Keep fleets small (1-2 servers, 1-2 models): each model instance is a ~42 MB
process. ``workers.testing.write_scenario`` writes a scenario with its own deterministic
profiles.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workers.testing import FleetFactory


@pytest.fixture(scope="module")
def triton_fleet() -> Iterator[FleetFactory]:
    factory = FleetFactory()
    try:
        yield factory
    finally:
        left = factory.close()
    assert not left, f"processes left running after the fleet stopped: {left}"
