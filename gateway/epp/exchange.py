"""One ext_proc stream = one HTTP request through Envoy, from its headers to its end.

The state machine (each step answers the message Envoy sent)::

    request_headers   classify; infer with a known model -> service.begin -> route(list)
                      gRPC infer/meta without x-synergai-model -> ask_body (buffered, once)
                      meta -> route(a healthy worker serving the model), not booked
                      other -> continue (Envoy balances), client-sent picks removed
                      refusals -> ImmediateResponse (429 + Retry-After, 503, 400, 404)
    request_body      (gRPC only) parse the ModelInferRequest head -> as above, body phase
    response_headers  REST: the answer is complete for routing -> service.end(status)
                      gRPC: remember :status; wait for the trailers (grpc-status)
    response_trailers gRPC: service.end(grpc-status); x-synergai-* as trailing metadata
    stream end        anything still open ends as cancelled (client gone, Envoy reset)

Latency is measured here, from the request-headers message to the response headers (REST:
Triton writes its whole answer at once) or trailers (gRPC), on the service's clock: the same
quantity the gateway's own request path feeds its correction, outlier detection and metrics.
When Envoy retried onto a fallback (``envoy.lb/...-served`` differs from the pick), the pick is
ended as a connect failure (outlier detection counts it) and the answer is not learned from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from gateway.api.grpc_wire import parse_infer_head
from gateway.core.calls import InferCall, outcome_of
from gateway.core.hints import HINT_KEYS, hint_items
from gateway.core.ticket import Ticket
from gateway.core.validate import triton_client_error
from gateway.epp import replies
from gateway.epp.endpoints import endpoint_of
from gateway.epp.protocol import (
    BATCH_HEADER,
    GIE_OBJECTIVE_HEADER,
    GIE_SLO_HEADER,
    MODEL_HEADER,
    Target,
    classify,
    header_map,
    served_endpoint,
    subset_hint,
)
from gateway.errors import BadRequest, GatewayError, NoHealthyWorker, StatusCode
from gateway.health.outcome import Outcome
from gateway.routing.framework import Estimate
from gateway.routing.predict import pool_estimates
from gateway.routing.types import WorkerInfo
from gateway.routing.view import FleetView
from gateway.service import InferenceService
from gateway.upstream.base import UpstreamResponse

__all__ = ["Exchange", "PickerConfig"]

log = logging.getLogger(__name__)

_GRPC_HEADER_BYTES = 5  # gRPC message prefix: 1 byte compressed flag + 4 bytes length
_NO_SUBSET = nullcontext()  # no subset hint: nothing to hide (a generator costs ~1 µs)


class PickerConfig:
    """What an :class:`Exchange` needs besides the service (built once per EPP).

    Args:
        fallbacks: endpoints added after the pick, in the policy's order, for Envoy's retries.
        model_header: the metadata header that names a gRPC call's model.
        grpc_body: read a gRPC call's body when no header names its model (else: 400).
        objectives: ``x-gateway-inference-objective`` name -> hint values
            (``x-priority``, ``x-slo-ms``, ``x-category``).
    """

    def __init__(
        self,
        fallbacks: int = 1,
        model_header: str = MODEL_HEADER,
        grpc_body: bool = True,
        objectives: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.fallbacks = fallbacks
        self.model_header = model_header
        self.grpc_body = grpc_body
        self.objectives = dict(objectives or {})


def _hints(headers: Mapping[str, str], cfg: PickerConfig) -> dict[str, str]:
    """Hint values from headers, GIE names mapped onto ours (ours win)."""
    out = hint_items(headers)  # hints and misspelt ones: gateway.core.hints has the one rule
    if "x-slo-ms" not in out and GIE_SLO_HEADER in headers:
        out["x-slo-ms"] = headers[GIE_SLO_HEADER]
    objective = headers.get(GIE_OBJECTIVE_HEADER)
    if objective is not None:
        for key, value in cfg.objectives.get(objective, {}).items():
            out.setdefault(key, value)
    return out


def _batch(headers: Mapping[str, str]) -> int:
    raw = headers.get(BATCH_HEADER)
    if raw is None:
        return 1
    try:
        batch = int(raw)
    except ValueError:
        raise BadRequest(f"{BATCH_HEADER} must be an integer, got {raw!r}") from None
    if batch < 1:
        raise BadRequest(f"{BATCH_HEADER} must be >= 1, got {batch}")
    return batch


class Exchange:
    """The state of one ext_proc stream; :meth:`handle` answers each message (sync).

    Args:
        service: the shared request path (``gateway.service.InferenceService``): ``begin``,
            ``end``, ``policy``, ``view``, ``rng``, ``clock``, ``workers()``, ``healthy()``.
        cfg: the picker's configuration.
    """

    __slots__ = ("_headers", "_pending", "_status", "_target", "cfg", "service", "ticket")

    def __init__(self, service: InferenceService, cfg: PickerConfig) -> None:
        self.service = service
        self.cfg = cfg
        self.ticket: Ticket | None = None
        self._target: Target | None = None
        self._headers: dict[str, str] = {}
        self._status = 0
        self._pending: frozenset[str] | None = None

    # -- request side ----------------------------------------------------------------------

    def handle(self, msg: pb.ProcessingRequest) -> pb.ProcessingResponse | None:
        """The answer to one ext_proc message (None: nothing to answer)."""
        kind = msg.WhichOneof("request")
        if kind == "request_headers":
            return self._on_request_headers(msg)
        if kind == "response_headers":
            return self._on_response_headers(msg)
        if kind == "response_trailers":
            return self._on_response_trailers(msg)
        if kind == "request_body":
            return self._on_request_body(msg)
        if kind == "response_body":
            return self._on_response_body(msg)
        if kind == "request_trailers":
            return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
        return None

    def _on_request_headers(self, msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
        headers = header_map(msg.request_headers.headers.headers)
        target = classify(headers, self.cfg.model_header)
        self._target = target
        self._headers = headers
        self._pending = subset_hint(msg)
        if target.kind == "other":
            return replies.continue_headers()
        if target.model is None:
            if not self.cfg.grpc_body:
                return replies.refuse(
                    BadRequest(f"name the model in the {self.cfg.model_header} metadata"), True
                )
            return replies.ask_body()
        return self._pick(target, headers, body_phase=False)

    def _on_request_body(self, msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
        target = self._target
        if target is None or target.model is not None:
            return replies.continue_body()
        body = msg.request_body.body
        try:
            head = parse_infer_head(body[_GRPC_HEADER_BYTES:])  # name=1, version=2 as ModelInfer
        except GatewayError as exc:
            return replies.refuse(exc, True)
        params = {k: _param(v) for k, v in head.parameters.items() if k.lower() in HINT_KEYS}
        headers = dict(self._headers)
        if target.kind == "infer" and head.inputs and head.inputs[0].shape:
            headers.setdefault(BATCH_HEADER, str(max(1, head.inputs[0].shape[0])))
        found = Target(target.kind, head.model_name, head.model_version or None, grpc=True)
        self._target = found
        return self._pick(found, headers, body_phase=True, parameters=params)

    def _pick(
        self,
        target: Target,
        headers: Mapping[str, str],
        *,
        body_phase: bool,
        parameters: Mapping[str, Any] | None = None,
    ) -> pb.ProcessingResponse:
        try:
            with _NO_SUBSET if self._pending is None else self._subset(target):
                if target.kind == "meta":
                    worker = self._meta_worker(target.model or "")
                    return replies.route(
                        [endpoint_of(worker, target.grpc)],
                        int(self.service.config.request_timeout_s * 1000),
                        body_phase=body_phase,
                    )
                call = InferCall(
                    model=target.model or "",
                    version=target.version,
                    target=headers.get(":path", ""),
                    body=b"",
                    hints=_hints(headers, self.cfg),
                    parameters=parameters or {},  # metadata wins (gateway.core.hints)
                    batch=_batch(headers),
                    protocol="grpc" if target.grpc else "http",
                )
                ticket = self.service.begin(call)
                self.ticket = ticket
                endpoints = [endpoint_of(ticket.worker, target.grpc)]
                endpoints += self._fallbacks(ticket, target.grpc)
        except GatewayError as exc:
            return replies.refuse(exc, target.grpc)
        timeout_ms = max(1, int(ticket.timeout_s * 1000))
        return replies.route(endpoints, timeout_ms, body_phase=body_phase)

    @contextmanager
    def _subset(self, target: Target) -> Iterator[None]:
        """Hide the workers outside the proxy's subset hint for this one (sync) decision.

        No ``await`` runs inside, so no other request sees them hidden.

        Raises:
            NoHealthyWorker: the hint allows no worker (protocol 004: 503).
        """
        allowed = self._pending or frozenset()
        svc = self.service
        keep = {w.id for w in svc.workers() if _safe_endpoint(w, target.grpc) in allowed}
        if not keep:
            raise NoHealthyWorker("no endpoint of the subset hint serves this request")
        hidden = [w.id for w in svc.workers() if w.id not in keep and svc.healthy(w.id)]
        now = svc.clock.now()
        with _hide(svc, hidden, now):
            yield

    def _fallbacks(self, ticket: Ticket, grpc_call: bool) -> list[str]:
        """Up to ``cfg.fallbacks`` more workers, by predicted completion (earliest first).

        Envoy retries down the list only when the pick cannot be reached (connect failure,
        reset), so the next worker is the one predicted to answer first among the others:
        earliest completion on the same view, read with :func:`pool_estimates`. The policy's
        own ``choose`` is not asked: it learns from every decision it makes (arrival rates per
        pool, the self-check's twins, probe turns), and a hypothetical second choice per
        request would count every request twice.
        """
        if self.cfg.fallbacks <= 0:
            return []
        svc = self.service
        req = ticket.req
        out: list[str] = []
        taken = [ticket.worker.id]
        now = svc.clock.now()
        svc.view.advance(now)  # pool_estimates reads the view as the runner left it
        view = svc.view
        for _ in range(self.cfg.fallbacks):
            hidden = _hide_now(view, taken, now)  # no generator: this runs on every pick
            try:
                ests = pool_estimates(view, req.model, req.batch, now)
            finally:
                _show(view, hidden, now)
            if not ests:
                break
            wid = min(ests, key=_predicted).state.id
            worker = svc.worker(wid)
            if worker is None or wid in taken:
                break
            taken.append(wid)
            out.append(endpoint_of(worker, grpc_call))
        return out

    def _meta_worker(self, model: str) -> WorkerInfo:
        """Chosen as the front doors choose theirs (healthy, not drained, round robin)."""
        return self.service.fleet.meta_worker(model)

    # -- response side ---------------------------------------------------------------------

    def _on_response_headers(self, msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
        ticket = self.ticket
        if ticket is None:
            return replies.response_headers()
        hdrs = msg.response_headers
        status = 0
        grpc_status: str | None = None
        upstream = False
        for h in hdrs.headers.headers:
            key = h.key
            if key == ":status":
                status = int(h.raw_value or h.value)
            elif key == "grpc-status":
                grpc_status = (h.raw_value or h.value.encode()).decode()
            elif key == "x-envoy-upstream-service-time":
                upstream = True
        self._status = status
        target = self._target
        if target is not None and target.grpc:
            if grpc_status is not None or hdrs.end_of_stream:  # trailers-only answer
                self._end_grpc(msg, ticket, grpc_status, upstream)
                return replies.response_headers(_routing_headers(ticket))
            return replies.response_headers()
        if status == 500 and upstream and not hdrs.end_of_stream and not self._retried(msg, ticket):
            # whose fault: Triton's message says
            return replies.read_response_body(_routing_headers(ticket))
        self._end_http(msg, ticket, status, upstream)
        return replies.routed_response_headers(
            ticket.worker.id, ticket.worker.pool, _predicted_ms(ticket), ticket.policy
        )

    def _on_response_body(self, msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
        """A REST 500's body (asked for by :meth:`_on_response_headers`): classify and end.

        Triton's 500 for a body it cannot parse is the request's fault, answered 400 as the
        gateway's own door does; any other 500 is the worker's.
        """
        ticket = self.ticket
        if ticket is None or ticket.ended or self._status != 500:
            return replies.response_body()
        resp = triton_client_error(UpstreamResponse.from_http(500, msg.response_body.body))
        self._end(outcome_of(resp), _latency_ms(self.service, ticket), str(resp.http_status))
        return replies.response_body(None if resp.http_status == 500 else resp.http_status)

    def _on_response_trailers(self, msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
        ticket = self.ticket
        if ticket is None or ticket.ended:
            return replies.response_trailers()
        grpc_status = header_map(msg.response_trailers.trailers.headers).get("grpc-status")
        self._end_grpc(msg, ticket, grpc_status, True)
        return replies.response_trailers(_routing_headers(ticket))

    def _retried(self, msg: pb.ProcessingRequest, ticket: Ticket) -> bool:
        served = served_endpoint(msg)
        target = self._target
        if served is None or target is None:
            return False
        return served != endpoint_of(ticket.worker, target.grpc)

    def _end_http(
        self, msg: pb.ProcessingRequest, ticket: Ticket, status: int, upstream: bool
    ) -> None:
        if self._retried(msg, ticket):
            self._end(Outcome.CONNECT, None, "503")
        elif not upstream:  # Envoy's own answer: 503 no connection, 504 timeout
            self._end(Outcome.TIMEOUT if status == 504 else Outcome.CONNECT, None, str(status))
        else:
            self._end(_http_outcome(status), _latency_ms(self.service, ticket), str(status))

    def _end_grpc(
        self, msg: pb.ProcessingRequest, ticket: Ticket, grpc_status: str | None, upstream: bool
    ) -> None:
        if self._retried(msg, ticket):
            self._end(Outcome.CONNECT, None, "503")
        elif not upstream and self._status >= 500:
            why = Outcome.TIMEOUT if self._status == 504 else Outcome.CONNECT
            self._end(why, None, str(self._status))
        else:
            outcome, http_status = _grpc_outcome(_grpc_code(grpc_status))
            self._end(outcome, _latency_ms(self.service, ticket), http_status)

    def _end(self, outcome: Outcome, latency_ms: float | None, code: str) -> None:
        """``service.end`` once; accounting must never break Envoy's stream."""
        ticket = self.ticket
        if ticket is None or ticket.ended:
            return
        try:
            self.service.end(ticket, outcome, latency_ms, code)
        except Exception:
            log.exception("ending a request failed")

    def close(self) -> None:
        """The stream ended: a request still booked ends as cancelled (client or Envoy gone)."""
        self._end(Outcome.NEUTRAL, None, "499")


def _grpc_code(grpc_status: str | None) -> StatusCode:
    """The code of a ``grpc-status`` trailer (``UNKNOWN`` when absent or not a known code)."""
    if grpc_status and grpc_status.isdigit() and int(grpc_status) in _CODES:
        return StatusCode(int(grpc_status))
    return StatusCode.UNKNOWN


_CODES = frozenset(int(c) for c in StatusCode)
_HTTP_OUTCOMES: dict[int, Outcome] = {}
_GRPC_OUTCOMES: dict[StatusCode, tuple[Outcome, str]] = {}


def _http_outcome(status: int) -> Outcome:
    """:func:`outcome_of` a worker's REST answer with ``status``.

    The same for every answer with that status, so kept: building the answer costs 1 µs.
    """
    found = _HTTP_OUTCOMES.get(status)
    if found is None:
        found = outcome_of(UpstreamResponse.from_http(status, b""))
        if 100 <= status < 600:
            _HTTP_OUTCOMES[status] = found
    return found


def _grpc_outcome(code: StatusCode) -> tuple[Outcome, str]:
    """:func:`outcome_of` a worker's gRPC answer with ``code``, and its HTTP status (kept)."""
    found = _GRPC_OUTCOMES.get(code)
    if found is None:
        resp = UpstreamResponse.from_grpc(code, b"")
        found = _GRPC_OUTCOMES[code] = (outcome_of(resp), str(resp.http_status))
    return found


def _latency_ms(service: InferenceService, ticket: Ticket) -> float:
    """Milliseconds from the request-headers message to now (the answer), service clock."""
    return (service.clock.now() - ticket.req.arrival) * 1000.0


def _routing_headers(ticket: Ticket) -> dict[str, str]:
    """``x-synergai-*`` (DESIGN.md §6), as the gateway's front doors add them."""
    worker = ticket.worker
    return replies.routing_headers(worker.id, worker.pool, _predicted_ms(ticket), ticket.policy)


def _predicted_ms(ticket: Ticket) -> str:
    pred = ticket.decision.predicted_ms
    return "nan" if pred != pred else f"{pred:.3f}"


def _predicted(e: Estimate) -> float:
    return e.predicted_ms


def _param(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def _safe_endpoint(worker: WorkerInfo, grpc_call: bool) -> str | None:
    try:
        return endpoint_of(worker, grpc_call)
    except ValueError:
        return None


@contextmanager
def _hide(service: InferenceService, ids: list[str], now: float) -> Iterator[None]:
    """Mark ``ids`` unavailable in the view for one synchronous decision, then restore."""
    view = service.view
    hidden = _hide_now(view, ids, now)
    try:
        yield
    finally:
        _show(view, hidden, now)


def _hide_now(view: FleetView, ids: list[str], now: float) -> list[str]:
    """Mark the available ones of ``ids`` unavailable; those (for :func:`_show`)."""
    hidden = []
    for wid in ids:
        state = view.state(wid)
        if state is not None and state.available(now):
            view.set_healthy(wid, False, now)
            hidden.append(wid)
    return hidden


def _show(view: FleetView, hidden: list[str], now: float) -> None:
    for wid in hidden:
        view.set_healthy(wid, True, now)
