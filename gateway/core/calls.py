"""What a front door hands to :class:`gateway.service.InferenceService`, what it gets back, and
how an attempt on a worker ended (:func:`outcome_of`, the one classification).

Kept apart from the service so front doors (REST, gRPC) and tests import plain data types.

**How an attempt ended.** Every consumer of that fact (outlier detection and health, the
routing view's ejection, peak EWMA and online correction, profile drift, retries, the
``synergai_upstream_errors_total`` metric) reads it from :func:`outcome_of`, which reads the
worker's typed status through the one table (:data:`gateway.errors.STATUS_TABLE`)::

    the attempt ended with                    outcome  health  view, correction  drift   retry
    an answer, code OK                        SUCCESS  clears  learns latency    learns  -
    an answer, a client's code (4xx:          NEUTRAL  -       abandoned         -       no
      INVALID_ARGUMENT, NOT_FOUND...)
    an answer, a worker's code (5xx:          ERROR    counts  failure           -       (1)
      INTERNAL, UNAVAILABLE...)
    UpstreamConnectError (refused)            CONNECT  counts  failure           -       yes
    UpstreamTimeout (the gateway's limit)     TIMEOUT  counts  failure           -       (2)
    UpstreamError (reset after sending)       ERROR    counts  failure           -       (2)
    ClientDeadlineExceeded, client went away  NEUTRAL  -       abandoned         -       no

    (1) UNAVAILABLE (not run): yes; otherwise as (2). (2) only for an idempotent model.

So no request a client can make (malformed, cancelled, with a short deadline) counts against a
worker; what the worker did wrong always does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from gateway.core.hints import RawHints
from gateway.errors import Blame, GatewayError, UpstreamConnectError, UpstreamTimeout
from gateway.health.outcome import Outcome
from gateway.routing.types import Decision, Request, WorkerInfo
from gateway.settings import ModelDefaults, Settings
from gateway.upstream.base import UpstreamResponse

__all__ = [
    "UPSTREAM_ERROR_KIND",
    "InferCall",
    "InferResult",
    "ServiceConfig",
    "finish_view",
    "outcome_of",
]

UPSTREAM_ERROR_KIND = {
    Outcome.TIMEOUT: "timeout",
    Outcome.CONNECT: "connect",
    Outcome.ERROR: "reset",
}
"""``kind`` label of ``synergai_upstream_errors_total`` for an attempt that raised."""


def outcome_of(result: UpstreamResponse | GatewayError | None) -> Outcome:
    """How one attempt on a worker ended (see the module docstring's table).

    Args:
        result: the worker's answer, the error the call raised, or ``None`` when the attempt
            never ended by itself (the client went away and the request was cancelled).
    """
    if isinstance(result, UpstreamResponse):
        who = result.blame
        if who is Blame.NONE:
            return Outcome.SUCCESS
        return Outcome.ERROR if who is Blame.WORKER else Outcome.NEUTRAL
    if result is None or result.fault is not Blame.WORKER:
        return Outcome.NEUTRAL
    if isinstance(result, UpstreamTimeout):
        return Outcome.TIMEOUT
    if isinstance(result, UpstreamConnectError):
        return Outcome.CONNECT
    return Outcome.ERROR


class _View(Protocol):
    def finish(
        self, worker: str, req: Request, service_ms: float, latency_ms: float | None, now: float
    ) -> None: ...
    def abandon(self, worker: str, req: Request, service_ms: float, now: float) -> None: ...


def finish_view(
    view: _View,
    worker: str,
    req: Request,
    service_ms: float,
    outcome: Outcome,
    latency_ms: float | None,
    now: float,
) -> None:
    """Tell the routing view how a request it saw start ended, by its :func:`outcome_of`.

    A success teaches it the latency; a worker fault is a failure (its ejection count); a
    neutral end is abandoned: nothing about the worker is learned.
    """
    if outcome is Outcome.SUCCESS and latency_ms is not None:
        view.finish(worker, req, service_ms, latency_ms, now)
    elif outcome is Outcome.NEUTRAL:
        view.abandon(worker, req, service_ms, now)
    else:
        view.finish(worker, req, service_ms, None, now)


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


def _default(name: str) -> Any:
    """The default of ``Settings.<name>``: :class:`ServiceConfig` repeats no default."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """The settings the request path needs: a slice of :class:`gateway.settings.Settings`.

    Every field is the ``Settings`` field of the same name, with its default;
    :meth:`from_settings` takes the slice.
    """

    models: Mapping[str, ModelDefaults] = field(default_factory=lambda: _default("models"))
    default_slo_ms: float = _default("default_slo_ms")
    request_timeout_s: float = _default("request_timeout_s")
    max_inflight: int = _default("max_inflight")
    low_priority_share: float = _default("low_priority_share")
    high_priority: int = _default("high_priority")
    timeout_slo_factor: float = _default("timeout_slo_factor")
    min_timeout_s: float = _default("min_timeout_s")
    retry_budget_ratio: float = _default("retry_budget_ratio")
    retry_min_per_s: float = _default("retry_min_per_s")

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceConfig:
        """The request path's slice of ``settings``."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})
