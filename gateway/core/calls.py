"""What a front door hands to :class:`gateway.service.InferenceService`, and what it gets back.

Kept apart from the service so front doors (REST, gRPC) and tests import plain data types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.core.hints import RawHints
from gateway.routing.types import Decision, WorkerInfo
from gateway.settings import ModelDefaults
from gateway.upstream.base import UpstreamResponse

__all__ = ["InferCall", "InferResult", "ServiceConfig", "seen_ms", "worker_fault"]


_GRPC_CLIENT_ERRORS = frozenset({3, 5, 6, 7, 9, 11, 12, 16})
"""gRPC codes that blame the request, not the worker: INVALID_ARGUMENT, NOT_FOUND,
ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED,
UNAUTHENTICATED."""


def worker_fault(resp: UpstreamResponse, protocol: str) -> bool:
    """Whether a worker's answer says the *worker* failed (not the request).

    A Triton 4xx (wrong shape, unknown input) is the client's fault: the worker is healthy and
    must not be ejected for it. HTTP 5xx and gRPC server-side codes are the worker's.
    """
    if resp.ok:
        return False
    if protocol == "grpc":
        return resp.status not in _GRPC_CLIENT_ERRORS
    return resp.status >= 500


@dataclass(slots=True)
class InferCall:
    """One inference request as a front door hands it over.

    Attributes:
        model: model name.
        version: model version, or ``None``.
        target: where it goes on the worker: the HTTP path (``/v2/models/m/infer``) or the
            gRPC method name.
        body: the request bytes, forwarded unchanged (REST body, serialized protobuf).
        headers: headers / metadata to forward to the worker (already filtered).
        hints: hint values from headers / metadata (lower-case names, raw values).
        parameters: the request's ``parameters`` (hints may be there too).
        batch: items in the request (first dimension of the first input).
        protocol: which registered upstream forwards it (``"http"``, ``"grpc"``).
    """

    model: str
    version: str | None
    target: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    hints: RawHints = field(default_factory=dict)
    parameters: RawHints = field(default_factory=dict)
    batch: int = 1
    protocol: str = "http"


@dataclass(slots=True)
class InferResult:
    """A worker's answer and how it was routed."""

    response: UpstreamResponse
    worker: WorkerInfo
    decision: Decision
    policy: str
    latency_ms: float

    def routing_headers(self) -> dict[str, str]:
        """``x-synergai-*`` response headers / trailing metadata (DESIGN.md §6)."""
        pred = self.decision.predicted_ms
        return {
            "x-synergai-worker": self.worker.id,
            "x-synergai-pool": self.worker.pool,
            "x-synergai-predicted-ms": "nan" if math.isnan(pred) else f"{pred:.3f}",
            "x-synergai-policy": self.policy,
        }


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """The settings the request path needs (a slice of :class:`gateway.settings.Settings`)."""

    models: Mapping[str, ModelDefaults] = field(default_factory=dict)
    default_slo_ms: float = 1000.0
    request_timeout_s: float = 30.0
    max_inflight: int = 4096
    low_priority_share: float = 0.8
    high_priority: int = 1
    timeout_slo_factor: float = 10.0
    min_timeout_s: float = 5.0
    retry_budget_ratio: float = 0.2
    retry_min_per_s: float = 10.0


def seen_ms(latency_ms: float | None, ok: bool, fault: bool, decision: Decision) -> float | None:
    """What the view is told about a finished request.

    The measured latency for a success; ``None`` (a failure: the view ejects the worker) for a
    transport failure or a worker fault; and for a request the worker refused (a 4xx) the
    prediction itself, so neither health nor the online correction learns from an answer that
    says nothing about the worker's speed.
    """
    if latency_ms is None or fault:
        return None
    if ok:
        return latency_ms
    pred = decision.predicted_ms
    return pred if math.isfinite(pred) and pred > 0 else latency_ms
