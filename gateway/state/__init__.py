"""Shared state across gateway replicas: the :class:`StateStore` seam and its collectors.

``store`` holds the Protocol, ``redis_store`` the real implementation (Lua, leased), and
``refresher`` / ``health`` the background collectors that feed the routing view. Issue 7 adds
the Triton metrics scraper and worker discovery here, beside them.
"""

from gateway.state.store import Ended, Lease, NullStore, StateStore, WorkerLoad

__all__ = ["Ended", "Lease", "NullStore", "StateStore", "WorkerLoad"]
