"""The live operator page of the gateway (``/synergai/ui``) and its stats endpoint.

Wiring, in ``create_app``::

    from gateway.ui import ui_router
    app.include_router(ui_router())            # stats from the app's own /metrics
    # or, with the app's CollectorRegistry at hand (no in-process scrape):
    app.include_router(ui_router(RegistrySource(metrics.registry)))

See docs/ui.md for what the page shows and how it degrades.
"""

from gateway.ui.prom import AsgiMetricsSource, RegistrySource, sample_from_families
from gateway.ui.router import UI_PATH, ui_router
from gateway.ui.stats import ANY_PRIORITY, CounterSample, PoolLatency, StatsHistory, StatsSource

__all__ = [
    "ANY_PRIORITY",
    "UI_PATH",
    "AsgiMetricsSource",
    "CounterSample",
    "PoolLatency",
    "RegistrySource",
    "StatsHistory",
    "StatsSource",
    "sample_from_families",
    "ui_router",
]
