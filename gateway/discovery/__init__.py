"""Worker discovery: one interface (:class:`WorkerSource`), three sources, one sync loop.

Sources: the config file's static list (:class:`StaticSource`), the Redis registry
(``registry.RegistrySource``; workers or their launcher register with a heartbeat through
``registry.Registrar``) and Kubernetes EndpointSlices (``kubernetes.EndpointSliceSource``).
:class:`DiscoverySync` applies the union to the service (``add_worker`` / ``remove_worker``).
``build.make_sources`` builds the configured sources from settings.
"""

from gateway.discovery.base import DiscoverySync, Membership, StaticSource, WorkerSource
from gateway.discovery.config import DiscoverySettings, KubernetesDiscovery, PoolTemplate

__all__ = [
    "DiscoverySettings",
    "DiscoverySync",
    "KubernetesDiscovery",
    "Membership",
    "PoolTemplate",
    "StaticSource",
    "WorkerSource",
]
