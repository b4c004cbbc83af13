"""The gateway's one error tree, mapped to HTTP status and gRPC code here and nowhere else.

Every failure a client can see is a :class:`GatewayError`; front doors (REST, gRPC) turn it into
the protocol's own form with :meth:`GatewayError.http_status` / :attr:`GatewayError.grpc_code`
and the message, never a stack trace::

    GatewayError                     HTTP  gRPC
    ├── BadRequest                    400  INVALID_ARGUMENT   malformed body, header, hint
    │   ├── PayloadTooLarge           413  INVALID_ARGUMENT   body over the configured limit
    │   └── UnsupportedMediaType      415  INVALID_ARGUMENT   Content-Type not JSON or binary
    ├── Unauthorized                  401  UNAUTHENTICATED    ops call without a valid token
    ├── Forbidden                     403  PERMISSION_DENIED  ops call when no token is configured
    ├── ModelNotFound                 404  NOT_FOUND          no worker serves the model
    ├── Shed                          429  RESOURCE_EXHAUSTED the SLO cannot be met / overload
    ├── NoHealthyWorker               503  UNAVAILABLE        the model's workers are all down
    ├── UpstreamError                 502  UNAVAILABLE        connect/reset talking to a worker
    │   └── UpstreamConnectError      502  UNAVAILABLE        never reached it: safe to retry
    └── UpstreamTimeout               504  DEADLINE_EXCEEDED  the worker did not answer in time

Triton's own error answers are not errors here: they pass through with Triton's status and
body (see :mod:`gateway.service`). The gRPC codes are the names of ``grpc.StatusCode`` members,
so this module needs no grpc import.
"""

from __future__ import annotations

from typing import ClassVar

import orjson

__all__ = [
    "BadRequest",
    "Forbidden",
    "GatewayError",
    "ModelNotFound",
    "NoHealthyWorker",
    "PayloadTooLarge",
    "Shed",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamTimeout",
]


class GatewayError(Exception):
    """Base of every error a client can see; ``message`` is safe to show to anyone."""

    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"
    reason: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        """Extra HTTP response headers (``Retry-After`` for :class:`Shed`)."""
        return {}

    def json_body(self) -> bytes:
        """The KServe v2 REST error body ``{"error": "..."}``."""
        return orjson.dumps({"error": self.message})


class BadRequest(GatewayError):
    """The request is malformed: body, binary header, hint values, path."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    reason = "bad_request"


class PayloadTooLarge(BadRequest):
    """The body is larger than ``max_body_bytes``."""

    http_status = 413
    reason = "too_large"


class UnsupportedMediaType(BadRequest):
    """The body's ``Content-Type`` is neither JSON nor Triton's binary-tensor octet stream."""

    http_status = 415
    reason = "media_type"


class Unauthorized(GatewayError):
    """An ops call that changes state came without a valid bearer token."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    reason = "unauthorized"

    def headers(self) -> dict[str, str]:
        """RFC 6750 challenge."""
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(GatewayError):
    """State-changing ops are disabled because no admin token is configured."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"
    reason = "forbidden"


class ModelNotFound(GatewayError):
    """No configured worker serves the model (or the version)."""

    http_status = 404
    grpc_code = "NOT_FOUND"
    reason = "unknown_model"


class Shed(GatewayError):
    """Refused before any worker saw it: its SLO cannot be met, or the gateway is overloaded.

    Attributes:
        retry_after_s: the client's back-off hint, whole seconds (``Retry-After``).
    """

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    reason = "shed"

    def __init__(self, message: str, retry_after_s: int = 1, why: str = "slo") -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))
        self.why = why

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds."""
        return {"Retry-After": str(self.retry_after_s)}


class NoHealthyWorker(GatewayError):
    """Every worker serving the model is unhealthy or ejected."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    reason = "no_worker"

    def headers(self) -> dict[str, str]:
        """Workers usually come back within seconds."""
        return {"Retry-After": "1"}


class UpstreamError(GatewayError):
    """Talking to the worker failed (connection refused or reset, protocol error)."""

    http_status = 502
    grpc_code = "UNAVAILABLE"
    reason = "upstream"


class UpstreamConnectError(UpstreamError):
    """No connection to the worker could be made (refused, connect timeout, no route).

    The worker cannot have seen the request, so it is safe to send it elsewhere
    (:mod:`gateway.core.retry`), unlike a reset after the request was written.
    """

    reason = "connect"


class UpstreamTimeout(GatewayError):
    """The worker did not answer within the request's timeout."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"
    reason = "timeout"
