"""Clients that carry requests to Triton workers, behind the :class:`Upstream` seam."""

from gateway.upstream.base import Upstream, UpstreamResponse, make_http_upstream

__all__ = ["Upstream", "UpstreamResponse", "make_http_upstream"]
