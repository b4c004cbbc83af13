"""Scorers: a cost per candidate, lower is better; each module states its formula and units."""

from gateway.routing.scorers.efficiency import efficiency_cost
from gateway.routing.scorers.peak_ewma import peak_ewma_cost
from gateway.routing.scorers.predicted_latency import predicted_latency
from gateway.routing.scorers.queue_depth import queue_depth
from gateway.routing.scorers.slo_headroom import slo_headroom

__all__ = ["efficiency_cost", "peak_ewma_cost", "predicted_latency", "queue_depth", "slo_headroom"]
