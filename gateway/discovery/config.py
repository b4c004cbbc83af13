"""Discovery settings (the ``discovery:`` block of the gateway config file).

::

    discovery:
      sources: [static, redis, kubernetes]   # default [static]: the config's workers only
      interval_s: 2
      registry_url: redis://valkey:6379/0    # default: the gateway's REDIS_URL
      kubernetes:
        namespace: synergai                  # default: the pod's own namespace
        label_selector: synergai.io/pool     # EndpointSlices carrying a pool label
        pools:                               # what a pod of each pool serves
          edge-nx: {models: [resnet50, bert-base], instances: 1, rtt_ms: 1.0}

Membership is the union of the listed sources (the first source naming an id wins). A pool
found in Kubernetes without a ``pools`` entry borrows the models and ``rtt_ms`` of the static
worker of the same pool, with one instance per pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt

__all__ = ["DiscoverySettings", "KubernetesDiscovery", "PoolTemplate", "SourceName"]

SourceName = Literal["static", "redis", "kubernetes"]

_SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class PoolTemplate(BaseModel):
    """What every discovered worker of one pool serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(min_length=1)
    instances: PositiveInt = 1
    rtt_ms: NonNegativeFloat = 0.0


class KubernetesDiscovery(BaseModel):
    """EndpointSlice discovery through the API server (in-cluster service account)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str | None = Field(
        default=None,
        description="default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
    )
    namespace: str | None = None
    label_selector: str = "synergai.io/pool"
    token_path: Path = _SA / "token"
    ca_path: Path = _SA / "ca.crt"
    namespace_path: Path = _SA / "namespace"
    pools: dict[str, PoolTemplate] = Field(default_factory=dict)
    timeout_s: PositiveFloat = 5.0


def _static_only() -> list[SourceName]:
    return ["static"]


class DiscoverySettings(BaseModel):
    """Where the gateway learns its workers; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[SourceName] = Field(default_factory=_static_only, min_length=1)
    interval_s: PositiveFloat = 2.0
    registry_url: str | None = None
    kubernetes: KubernetesDiscovery = Field(default_factory=KubernetesDiscovery)

    @property
    def dynamic(self) -> bool:
        """Whether anything beyond the static list is configured (a discovery loop runs)."""
        return self.sources != ["static"]
