"""The gateway's one error tree and its one status table: HTTP status, gRPC code, and blame.

**Statuses.** :class:`StatusCode` (the gRPC canonical codes) is the one vocabulary for how an
answer ended, whatever protocol carried it. :data:`STATUS_TABLE` maps each code to its HTTP
status and says whose fault it is (:class:`Blame`); everything else derives from it: the
HTTP status a gRPC answer is counted and answered with (:func:`http_status`), the code of a
worker's HTTP answer (:func:`code_for_http`), and what a worker's answer does to its record
(:func:`blame`: health, outlier ejection, latency correction, drift and retries all follow it,
see :func:`gateway.core.calls.outcome_of`). A worker's answer carries its code typed
(:class:`gateway.upstream.base.UpstreamResponse` ``.code``), never a bare integer whose meaning
depends on the protocol.

A **client** fault is a request the worker refused for what it is (names, shapes, datatypes,
sizes, data, versions, parameters) or a client's own choice (cancel, its deadline): it never
counts against a worker. A **worker** fault (the server or its backend failed, it is not
ready, it did not answer in time, the connection failed) counts against that worker. One
refinement lives in :func:`gateway.core.validate.triton_client_error`: Triton 2.51 answers some
unparsable REST bodies with a 500, which is made the 400 / ``INVALID_ARGUMENT`` it is.

**Errors.** Every failure a client can see is a :class:`GatewayError`; front doors (REST, gRPC)
turn it into the protocol's own form with :attr:`GatewayError.http_status` /
:attr:`GatewayError.code` and the message, never a stack trace::

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
    ├── UpstreamTimeout               504  DEADLINE_EXCEEDED  the worker did not answer in time
    └── ClientDeadlineExceeded        499  DEADLINE_EXCEEDED  the client's own deadline passed

Triton's own error answers are not errors here: they pass through with Triton's status and
body (see :mod:`gateway.service`). :class:`StatusCode` has the values of ``grpc.StatusCode``,
so this module needs no grpc import (:mod:`gateway.upstream.grpc_client` converts).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import ClassVar

import orjson

__all__ = [
    "STATUS_TABLE",
    "BadRequest",
    "Blame",
    "ClientDeadlineExceeded",
    "Forbidden",
    "GatewayError",
    "ModelNotFound",
    "NoHealthyWorker",
    "PayloadTooLarge",
    "Shed",
    "StatusCode",
    "StatusRow",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamTimeout",
    "blame",
    "code_for_http",
    "http_status",
    "status_table_markdown",
]


class StatusCode(IntEnum):
    """The gRPC canonical status codes (the values of ``grpc.StatusCode``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Blame(Enum):
    """Whose fault an answer is, as far as the worker's record goes.

    Attributes:
        NONE: a success: the worker's latency is learned from it.
        CLIENT: the request's fault or the client's choice: nothing about the worker is
            learned or counted (health, ejection, correction, drift, retries).
        WORKER: counts against the worker (outlier detection, retry elsewhere when safe).
    """

    NONE = "none"
    CLIENT = "client"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One row of :data:`STATUS_TABLE`."""

    code: StatusCode
    http: int
    blame: Blame
    meaning: str


_C, _W = Blame.CLIENT, Blame.WORKER

STATUS_TABLE: tuple[StatusRow, ...] = (
    StatusRow(StatusCode.OK, 200, Blame.NONE, "success"),
    StatusRow(StatusCode.INVALID_ARGUMENT, 400, _C, "malformed request: input names, shapes, "
              "datatypes, byte sizes, data, parameters, hints"),
    StatusRow(StatusCode.FAILED_PRECONDITION, 400, _C, "the request does not fit the model"),
    StatusRow(StatusCode.OUT_OF_RANGE, 400, _C, "a value out of range"),
    StatusRow(StatusCode.UNAUTHENTICATED, 401, _C, "no valid credentials"),
    StatusRow(StatusCode.PERMISSION_DENIED, 403, _C, "not allowed"),
    StatusRow(StatusCode.NOT_FOUND, 404, _C, "unknown model or version"),
    StatusRow(StatusCode.ALREADY_EXISTS, 409, _C, "conflicts with existing state"),
    StatusRow(StatusCode.ABORTED, 409, _C, "conflicts with concurrent state"),
    StatusRow(StatusCode.RESOURCE_EXHAUSTED, 429, _C, "over a limit (message size, quota) or "
              "shed by the gateway"),
    StatusRow(StatusCode.CANCELLED, 499, _C, "the client cancelled or went away"),
    StatusRow(StatusCode.UNIMPLEMENTED, 501, _C, "a method or feature the server does not have"),
    StatusRow(StatusCode.INTERNAL, 500, _W, "the server or its backend failed"),
    StatusRow(StatusCode.UNKNOWN, 500, _W, "an error the server did not classify"),
    StatusRow(StatusCode.DATA_LOSS, 500, _W, "unrecoverable data loss"),
    StatusRow(StatusCode.UNAVAILABLE, 503, _W, "not ready, shutting down, or unreachable: not "
              "run"),
    StatusRow(StatusCode.DEADLINE_EXCEEDED, 504, _W, "no answer within the gateway's timeout"),
)  # fmt: skip
"""Every code once: its HTTP status and whose fault it is. HTTP to code takes the first row
with that status (so 400 reads as ``INVALID_ARGUMENT``, 500 as ``INTERNAL``)."""

_BY_CODE: dict[StatusCode, StatusRow] = {row.code: row for row in STATUS_TABLE}
_BY_HTTP: dict[int, StatusCode] = {}
for _row in STATUS_TABLE:
    _BY_HTTP.setdefault(_row.http, _row.code)
del _row


def http_status(code: StatusCode) -> int:
    """The HTTP status of ``code``."""
    return _BY_CODE[code].http


def code_for_http(status: int) -> StatusCode:
    """The code of an HTTP answer: the table's, else by class.

    A status the table does not list reads as its class: any 2xx ``OK``, any other 4xx
    ``INVALID_ARGUMENT`` (the request's fault, e.g. 413), any other 5xx ``INTERNAL``, anything
    else ``UNKNOWN``.
    """
    code = _BY_HTTP.get(status)
    if code is not None:
        return code
    if 200 <= status < 300:
        return StatusCode.OK
    if 400 <= status < 500:
        return StatusCode.INVALID_ARGUMENT
    if 500 <= status < 600:
        return StatusCode.INTERNAL
    return StatusCode.UNKNOWN


def blame(code: StatusCode) -> Blame:
    """Whose fault an answer with ``code`` is (:data:`STATUS_TABLE`)."""
    return _BY_CODE[code].blame


def status_table_markdown() -> str:
    """:data:`STATUS_TABLE` as the Markdown table of ``docs/grpc.md`` (a test keeps them equal)."""
    lines = [
        "| gRPC code | HTTP | whose fault | meaning |",
        "|---|---|---|---|",
    ]
    for row in STATUS_TABLE:
        who = {Blame.NONE: "none", Blame.CLIENT: "client", Blame.WORKER: "**worker**"}[row.blame]
        lines.append(f"| `{row.code.name}` | {row.http} | {who} | {row.meaning} |")
    return "\n".join(lines) + "\n"


class GatewayError(Exception):
    """Base of every error a client can see; ``message`` is safe to show to anyone.

    Attributes:
        http_status: the REST answer's status.
        code: the gRPC answer's code.
        fault: who is to blame when a call to a worker raised it: :attr:`Blame.WORKER` for
            :class:`UpstreamError` and :class:`UpstreamTimeout`; otherwise the worker is not
            (errors raised before any worker was called, the client's own deadline).
        reason: a short label.
    """

    http_status: ClassVar[int] = 500
    code: ClassVar[StatusCode] = StatusCode.INTERNAL
    fault: ClassVar[Blame] = Blame.CLIENT
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
    code = StatusCode.INVALID_ARGUMENT
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
    code = StatusCode.UNAUTHENTICATED
    reason = "unauthorized"

    def headers(self) -> dict[str, str]:
        """RFC 6750 challenge."""
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(GatewayError):
    """State-changing ops are disabled because no admin token is configured."""

    http_status = 403
    code = StatusCode.PERMISSION_DENIED
    reason = "forbidden"


class ModelNotFound(GatewayError):
    """No configured worker serves the model (or the version)."""

    http_status = 404
    code = StatusCode.NOT_FOUND
    reason = "unknown_model"


class Shed(GatewayError):
    """Refused before any worker saw it: its SLO cannot be met, or the gateway is overloaded.

    Attributes:
        retry_after_s: the client's back-off hint, whole seconds (``Retry-After``).
    """

    http_status = 429
    code = StatusCode.RESOURCE_EXHAUSTED
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
    code = StatusCode.UNAVAILABLE
    reason = "no_worker"

    def headers(self) -> dict[str, str]:
        """Workers usually come back within seconds."""
        return {"Retry-After": "1"}


class UpstreamError(GatewayError):
    """Talking to the worker failed (connection refused or reset, protocol error)."""

    http_status = 502
    code = StatusCode.UNAVAILABLE
    fault = Blame.WORKER
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
    code = StatusCode.DEADLINE_EXCEEDED
    fault = Blame.WORKER
    reason = "timeout"


class ClientDeadlineExceeded(GatewayError):
    """The client's own deadline (a gRPC deadline) passed before the worker answered.

    The client gave up; the worker did nothing wrong, so this never counts against it (unlike
    :class:`UpstreamTimeout`, the gateway's own limit). HTTP 499 is nginx's "client closed
    request", used in ``synergai_requests_total{code}``.
    """

    http_status = 499
    code = StatusCode.DEADLINE_EXCEEDED
    reason = "client_deadline"
