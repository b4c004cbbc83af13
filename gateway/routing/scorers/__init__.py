"""Scorers: a cost per candidate, lower is better; each module states its formula and units.

No module here is named like the function it exports: ``from gateway.routing.scorers import
queue_depth`` then means the function for mypy, mypyc and Python alike (with a module of that
name, compiled code imports the module; :mod:`gateway.native_build` refuses such lines).
"""

from gateway.routing.scorers.depth import queue_depth
from gateway.routing.scorers.latency import predicted_latency
from gateway.routing.scorers.peak_ewma import peak_ewma_cost

__all__ = ["peak_ewma_cost", "predicted_latency", "queue_depth"]
