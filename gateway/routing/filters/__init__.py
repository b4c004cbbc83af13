"""Filters: which workers a request may go to."""

from gateway.routing.filters.available import available_workers
from gateway.routing.filters.protect import harms_tighter, protects_tighter
from gateway.routing.filters.slo_fit import fits_slo

__all__ = ["available_workers", "fits_slo", "harms_tighter", "protects_tighter"]
