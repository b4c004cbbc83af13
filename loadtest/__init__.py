"""Load generation, simulation and benchmarks.

``import gateway`` comes first so the compiled hot modules of the simulator (listed in
``pyproject.toml``, :mod:`gateway.native`) are found before ``loadtest.sim`` is imported.
"""

import gateway as _gateway  # noqa: F401
