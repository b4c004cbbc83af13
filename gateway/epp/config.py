"""The endpoint picker's own settings: the ``epp:`` block of the gateway config file.

Everything else (workers, models, policy, Redis, health, timeouts) is the gateway's: an EPP and
a gateway reading one config file route alike and share one Redis view::

    epp:
      port: 9002              # ext_proc + gRPC health (GIE's default ext_proc port)
      transport: h2           # h2: our HTTP/2 on the event loop; grpcio: grpc.aio (reference)
      metrics_port: 9090      # Prometheus /metrics (0: off)
      fallbacks: 1            # endpoints after the pick, for Envoy's retries
      model_header: x-synergai-model
      grpc_body: true         # read a gRPC call's body when no header names its model
      objectives:             # x-gateway-inference-objective -> hints
        premium: {priority: 2, slo_ms: 50}
        batch: {priority: 0, category: frequency}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat

from gateway.routing.types import Category

__all__ = ["EppSettings", "Objective"]


class Objective(BaseModel):
    """Hint values a named GIE InferenceObjective stands for (request headers still win)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: int | None = None
    slo_ms: PositiveFloat | None = None
    category: Category | None = None

    def hints(self) -> dict[str, str]:
        """As raw hint values (``x-priority``, ``x-slo-ms``, ``x-category``)."""
        out: dict[str, str] = {}
        if self.priority is not None:
            out["x-priority"] = str(self.priority)
        if self.slo_ms is not None:
            out["x-slo-ms"] = f"{self.slo_ms:g}"
        if self.category is not None:
            out["x-category"] = self.category
        return out


class EppSettings(BaseModel):
    """The ``epp:`` block; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(default=9002, ge=0, le=65535)
    transport: Literal["h2", "grpcio"] = "h2"
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    fallbacks: NonNegativeInt = 1
    model_header: str = Field(default="x-synergai-model", min_length=1)
    grpc_body: bool = True
    objectives: dict[str, Objective] = Field(default_factory=dict)
