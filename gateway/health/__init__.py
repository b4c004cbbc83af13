"""Worker health: readiness probes, outlier detection and the verdict the router obeys.

See :mod:`gateway.health.monitor` for how the pieces fit.
"""

from gateway.health.monitor import HealthConfig, HealthMonitor, health_config
from gateway.health.outcome import Outcome, OutcomeSink
from gateway.health.outlier import OutlierConfig, OutlierDetector, Verdict
from gateway.health.probe import ProbeResult, probe_worker

__all__ = [
    "HealthConfig",
    "HealthMonitor",
    "Outcome",
    "OutcomeSink",
    "OutlierConfig",
    "OutlierDetector",
    "ProbeResult",
    "Verdict",
    "health_config",
    "probe_worker",
]
