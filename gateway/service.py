"""The protocol-agnostic request path, shared by the REST and gRPC front doors and the picker.

A request goes through two phases, so that a caller which sends the bytes itself (the Envoy
endpoint picker: Envoy forwards, the picker only decides) runs exactly the same path::

    ticket = service.begin(call)        # phase one, sync, no I/O on the path:
        404 unknown model / 400 batch over every max_batch / 400 bad hint
        (hints: header/metadata > parameters > model default -> Request)
        admission by priority (429 overload, 503 when nothing serves)
        policy.choose(request, view, now, rng) -> Decision (pure, sync); 429 shed / 503
        view.start; store.reserve (in the background); in-flight + 1
    ... the caller sends the request to ticket.worker ...
    service.end(ticket, outcome, latency_ms, code)   # phase two, exactly once:
        view.finish (the online correction learns from successes only), the health
        monitor's outlier detection, drift, metrics, in-flight - 1,
        store.release (in the background, after the answer)

``infer(call)`` is ``begin`` -> ``upstream.call(worker, target, body bytes, headers)`` ->
``end``, and at most one retry on another worker (:mod:`gateway.core.retry`), which books a
second ticket. An :class:`~gateway.health.outcome.Outcome` says what the attempt tells about
the worker: ``SUCCESS`` (2xx), ``NEUTRAL`` (the request's own fault, or the client left:
nothing learned), ``ERROR`` / ``TIMEOUT`` / ``CONNECT`` (the worker's fault).

A front door parses only what routing needs (model, version, batch, hint values) and hands
the request over as bytes in an :class:`InferCall`; the :class:`Upstream` registered for the
call's ``protocol`` forwards them: ``"http"`` (REST) and ``"grpc"`` (a ``grpc.aio`` upstream
taking serialized ``ModelInferRequest`` bytes, ``target`` = the method name).

Errors are :class:`gateway.errors.GatewayError` subclasses; a worker's own error answer is
returned (``result.response.ok`` false), not raised, so it passes through unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import Any

from gateway.core.admission import Admission
from gateway.core.calls import (
    UPSTREAM_ERROR_KIND,
    InferCall,
    InferResult,
    ServiceConfig,
    finish_view,
    outcome_of,
)
from gateway.core.clock import Clock
from gateway.core.hints import Hints, resolve_hints
from gateway.core.retry import RetryBudget, retry_reason
from gateway.core.ticket import Ticket
from gateway.core.timeouts import TimeoutPolicy
from gateway.core.validate import triton_client_error
from gateway.errors import (
    BadRequest,
    ClientDeadlineExceeded,
    GatewayError,
    ModelNotFound,
    NoHealthyWorker,
    Shed,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.fleet import Fleet
from gateway.health.outcome import Outcome, OutcomeSink
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.drift import DriftMonitor
from gateway.routing.types import Decision, Policy, Request, WorkerInfo
from gateway.routing.view import FleetView
from gateway.settings import ModelDefaults
from gateway.state.store import (
    OTHERS_WINDOW_S,
    REDECIDE_MARGIN_MS,
    Ended,
    Lease,
    StateStore,
    WorkerLoad,
    stale_limit_us,
)
from gateway.upstream.base import Upstream, UpstreamResponse

__all__ = ["InferCall", "InferResult", "InferenceService", "ServiceConfig"]

log = logging.getLogger(__name__)


_ABANDONED = Ended(abandoned=True)
_FAILED = Ended()


class InferenceService:
    """The request path; one per app, built by ``create_app``.

    Args:
        view: the routing view (``gateway.routing.view.FleetView``).
        policy: the routing policy.
        store: shared state (Redis); fail-open.
        upstreams: an :class:`Upstream` per protocol name.
        metrics: this app's metrics.
        clock: the time source for routing (seconds).
        rng: the policy's random source.
        config: request-path settings.
        gateway_id: prefix of lease tokens (unique per process).
        fleet: the fleet registry over ``view`` (default: a new one of the view's workers).
        health: told every attempt's outcome (the health monitor), or ``None``.
    """

    def __init__(
        self,
        view: FleetView,
        policy: Policy,
        store: StateStore,
        upstreams: Mapping[str, Upstream],
        metrics: GatewayMetrics,
        clock: Clock,
        rng: random.Random,
        config: ServiceConfig,
        gateway_id: str | None = None,
        *,
        fleet: Fleet | None = None,
        health: OutcomeSink | None = None,
    ) -> None:
        self.view = view
        self.policy = policy
        self.store = store
        self.upstreams: Mapping[str, Upstream] = MappingProxyType(dict(upstreams))
        """An :class:`Upstream` per protocol, fixed at construction."""
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self.config = config
        self.gateway_id = gateway_id or uuid.uuid4().hex[:12]
        self._seq = itertools.count()
        self.fleet = fleet if fleet is not None else Fleet(view, clock)
        """Membership, health and drain: the one registry (:mod:`gateway.fleet`)."""
        self._background: set[asyncio.Task[Any]] = set()
        self._open: set[str] = set()  # lease tokens of requests in flight
        self._held: dict[str, int] = {}  # per worker, this gateway's leases not yet released
        self._others_at = -math.inf  # when the store last showed another replica's lease
        self.inflight = 0
        self.admission = Admission(
            config.max_inflight, config.low_priority_share, config.high_priority
        )
        self.timeouts = TimeoutPolicy(
            config.request_timeout_s, config.timeout_slo_factor, config.min_timeout_s
        )
        self.retry_budget = RetryBudget(clock, config.retry_budget_ratio, config.retry_min_per_s)
        self.health = health
        """Told every attempt's :class:`Outcome` (the health monitor's outlier detection)."""
        self.drift = DriftMonitor.for_view(view, clock, metrics)
        """Profile drift per (worker, model) and observed service times (issue 10)."""

    def decide(self, req: Request, now: float) -> Decision:
        """The policy's decision for ``req`` on the view brought to ``now`` (no booking)."""
        self.view.advance(now)
        return self.policy.choose(req, self.view, now, self.rng)

    def switch_policy(self, policy: Policy, *, fresh_view: bool = False) -> None:
        """Route with ``policy`` from now on; requests in flight keep their decision.

        Args:
            policy: the new policy (a fresh instance: policies keep state).
            fresh_view: also forget what the view learned and booked (corrections, shadow
                queues, peak EWMAs), so the new policy starts as the first one did; health
                and drain stay (the fleet re-applies them). Only with nothing in flight: the
                demo and ``synergai bench`` switch on an idle fleet.
        """
        if fresh_view:
            self.view.reset()
            self.fleet.sync_view()
        self.policy = policy

    # -- the fleet (gateway.fleet.Fleet holds membership, health and drain) -----------------

    def workers(self) -> Sequence[WorkerInfo]:
        """Every known worker (the fleet's)."""
        return self.fleet.workers()

    def worker(self, worker_id: str) -> WorkerInfo | None:
        """A worker by id (the fleet's)."""
        return self.fleet.worker(worker_id)

    def add_worker(self, info: WorkerInfo) -> None:
        """Start routing to a new worker (discovery; :meth:`Fleet.add_worker`)."""
        self.fleet.add_worker(info)

    def remove_worker(self, worker_id: str) -> None:
        """Stop routing to a worker (discovery); requests in flight finish normally."""
        self.fleet.remove_worker(worker_id)

    def healthy(self, worker_id: str) -> bool:
        """Last health verdict of a worker (a drained worker may still be healthy)."""
        return self.fleet.healthy(worker_id)

    def drained(self, worker_id: str) -> bool:
        """Whether an operator drained the worker (no new requests)."""
        return self.fleet.drained(worker_id)

    def set_drained(self, worker_id: str, drained: bool) -> None:
        """Drain (no new requests; in-flight ones finish) or undrain a worker."""
        self.fleet.set_drained(worker_id, drained)

    def serves(self, model: str) -> bool:
        """Whether any configured worker serves ``model``."""
        return bool(self.view.serves(model))

    def ready(self) -> bool:
        """Ready when at least one worker is healthy and not drained."""
        return self.fleet.ready()

    def model_defaults(self, model: str) -> ModelDefaults:
        """Hint defaults of ``model``."""
        found = self.config.models.get(model)
        return found if found is not None else ModelDefaults(slo_ms=self.config.default_slo_ms)

    def apply_shared(self, worker_id: str, load: WorkerLoad, observed_at: float) -> None:
        """Feed a fleet-wide figure to the view (and metrics)."""
        if self.fleet.worker(worker_id) is not None:
            leases = load.outstanding - load.external  # every gateway's, Triton's extra aside
            if leases - self._held.get(worker_id, 0) > 0:  # another replica's lease
                self._others_at = observed_at
            self.view.apply_shared(
                worker_id, load.outstanding, load.work_ms, observed_at, load.free_ms
            )
            self.metrics.outstanding.labels(worker_id).set(load.outstanding)

    # -- the request path -----------------------------------------------------------------------

    def resolve(self, call: InferCall) -> Hints:
        """Validated hints of ``call`` (header > parameters > model default)."""
        d = self.model_defaults(call.model)
        return resolve_hints(call.hints, call.parameters, d.slo_ms, d.priority, d.category)

    def _shed(self, req: Request, decision: Decision) -> GatewayError:
        if not self.fleet.any_routable(req.model) or decision.reason in (
            "no_worker",
            "unavailable",
            "no_healthy",
        ):
            self.metrics.shed.labels("no_worker").inc()
            self.metrics.slo_violations.labels(req.model, str(req.priority), "shed").inc()
            return NoHealthyWorker(f"no healthy worker serves model '{req.model}'")
        self.metrics.shed.labels(decision.reason).inc()
        self.metrics.slo_violations.labels(req.model, str(req.priority), "shed").inc()
        retry = (
            max(1, math.ceil(decision.predicted_ms / 1000.0)) if decision.predicted_ms > 0 else 1
        )
        return Shed(
            f"model '{req.model}': SLO {req.slo_ms:g} ms cannot be met ({decision.reason})",
            retry_after_s=retry,
            why=decision.reason,
        )

    def begin(self, call: InferCall, confirm: bool = False) -> Ticket:
        """Phase one: validate, admit, route and book ``call`` on a worker.

        Checks the model (404) and batch (400), resolves the hints (400), admits by priority,
        asks the policy, then books the request on the chosen worker: ``view.start``, the
        store reservation (in the background), in-flight + 1. The caller sends the request
        and then calls :meth:`end` exactly once, whatever happened. ``confirm``: the caller
        awaits :meth:`confirm` before the send (the reserve may then be conditional).

        Raises:
            ModelNotFound: no worker serves the model.
            BadRequest: a hint is malformed, or no worker accepts the batch size.
            Shed: the policy shed it, or the gateway is full for its priority
                (:mod:`gateway.core.admission`).
            NoHealthyWorker: every worker serving the model is down or drained.
        """
        if not self.view.serves(call.model):
            raise ModelNotFound(f"unknown model '{call.model}'")
        if not self.view.eligible(call.model, call.batch):
            raise BadRequest(
                f"batch size {call.batch} exceeds max_batch of every worker serving "
                f"model '{call.model}'"
            )
        hints = self.resolve(call)
        if not self.admission.admits(self.inflight, hints.priority):
            raise self._overloaded(call.model, hints.priority)
        self.retry_budget.deposit()
        now = self.clock.now()
        req = Request(call.model, hints.slo_ms, call.batch, hints.priority, hints.category, now)
        t0 = time.perf_counter()
        decision = self.decide(req, now)
        self.metrics.decision.observe(time.perf_counter() - t0)
        wid = decision.worker
        worker = self.fleet.worker(wid) if wid is not None else None
        if worker is None:
            raise self._shed(req, decision)
        return self._book(req, decision, worker, self.timeouts.total_s(req.slo_ms), confirm)

    def _book(
        self,
        req: Request,
        decision: Decision,
        worker: WorkerInfo,
        timeout_s: float,
        confirm: bool = False,
    ) -> Ticket:
        """Book ``req`` on ``worker``: view start, store reserve (background), in-flight + 1."""
        service_ms = decision.service_ms if math.isfinite(decision.service_ms) else 0.0
        st = self.view.state(worker.id)
        replicas = self.clock.now() - self._others_at < OTHERS_WINDOW_S
        lease = Lease(
            worker.id,
            f"{self.gateway_id}:{next(self._seq)}",
            int(service_ms * 1000),
            max(1, worker.instances),
            int(st.rtt_ms * 500),  # the view's rtt (+ overhead_ms), as the local chain's
            # issue 16.2: beside other replicas, a conditional reserve that books only if the
            # decision still holds on the shared queue (see confirm)
            stale_limit_us(
                decision.predicted_ms, service_ms, req.slo_ms, st.rtt_ms, REDECIDE_MARGIN_MS
            )
            if confirm and replicas and math.isfinite(decision.predicted_ms)
            else -1,
        )
        self._held[worker.id] = self._held.get(worker.id, 0) + 1
        wait0 = self.drift.wait_ms(worker.id, req.arrival) if self.drift is not None else 0.0
        self.view.start(worker.id, req, service_ms, req.arrival)
        self.inflight += 1
        reserve = asyncio.get_running_loop().create_task(self.store.reserve(lease))
        self._open.add(lease.token)
        reserve.add_done_callback(partial(self._reserved, lease))
        return Ticket(
            req, decision, worker, self.policy.name, timeout_s, service_ms, lease, reserve, wait0
        )

    def end(self, ticket: Ticket, outcome: Outcome, latency_ms: float | None, code: str) -> None:
        """Phase two: how the attempt booked by :meth:`begin` ended; call it exactly once.

        Args:
            ticket: what :meth:`begin` returned.
            outcome: how the attempt ended, from :func:`gateway.core.calls.outcome_of` (the one
                classification, whoever sent the request): ``SUCCESS``; ``NEUTRAL`` when the
                end says nothing about the worker (the client's fault, the client went away);
                otherwise the worker's fault (``ERROR``, ``TIMEOUT``, ``CONNECT``).
            latency_ms: response time measured since ``ticket.req.arrival`` (ms), or ``None``
                when no answer came.
            code: the status for ``synergai_requests_total`` (``"200"``, ``"504"``, ``"499"``).

        Effects: the routing view (:func:`gateway.core.calls.finish_view`: the online correction
        learns from a success only, a worker fault is a failure, a neutral end moves nothing),
        the health monitor's outlier detection, drift (successes), metrics, in-flight - 1, and
        the store release (in the background).
        """
        if ticket.ended:
            return
        ticket.ended = True
        req, worker, decision = ticket.req, ticket.worker, ticket.decision
        ok = outcome is Outcome.SUCCESS
        if latency_ms is not None:
            self._observe(req, decision, worker, ok, latency_ms)
            if ok and self.drift is not None:
                self.drift.observe(
                    worker, req.model, req.batch, latency_ms, ticket.wait0_ms, self.clock.now()
                )
        self.inflight -= 1
        self._open.discard(ticket.lease.token)
        finish_view(
            self.view, worker.id, req, ticket.service_ms, outcome, latency_ms, self.clock.now()
        )
        if self.health is not None:
            self.health.observe(worker.id, outcome)
        self.metrics.requests.labels(req.model, worker.pool, worker.id, ticket.policy, code).inc()
        now = self.clock.now()
        if outcome is Outcome.SUCCESS and latency_ms is not None:  # its true end on the worker
            half_rtt = (worker.rtt_ms + self.view.cfg.overhead_ms) * 0.5  # as the view reads it
            end_at = req.arrival + (latency_ms - half_rtt) / 1000.0
            ended = Ended(ago_us=int((now - end_at) * 1e6))
        else:
            ended = _ABANDONED if outcome is Outcome.NEUTRAL else _FAILED
        self._spawn(self._release(ticket.reserve, ticket.lease, ended, now))

    async def confirm(self, ticket: Ticket) -> Ticket:
        """Decide on fresh figures without an extra round trip (issue 16.2); before the send.

        Beside other replicas (the store showed a lease that is not this gateway's within
        ``OTHERS_WINDOW_S``), :meth:`_book` made the reserve conditional (``Lease.max_wait_us``):
        it books only if the wait on the shared queue is within ``REDECIDE_MARGIN_MS`` of the
        predicted one or still meets the SLO.
        Such a reserve is awaited here (one store round trip on the request path; every other
        ticket passes at once). If it booked nothing, the decision was made on stale figures:
        the local booking is undone, the fresh figures applied, and the request decided once
        more and booked unconditionally (a third round trip for that request only).

        Raises:
            Shed, NoHealthyWorker: the second decision shed the request.
        """
        if ticket.lease.max_wait_us < 0:
            return ticket
        try:
            load = await asyncio.shield(ticket.reserve)
        except asyncio.CancelledError:  # the client went away before the send
            self.end(ticket, Outcome.NEUTRAL, None, "499")
            raise
        except Exception:  # a store must not raise; route as decided
            return ticket
        if load is None or load.booked:
            return ticket
        req, worker = ticket.req, ticket.worker
        now = self.clock.now()
        ticket.ended = True  # nothing was reserved: no release, no end
        self._held[worker.id] -= 1
        self.inflight -= 1
        self._open.discard(ticket.lease.token)
        self.view.abandon(worker.id, req, ticket.service_ms, now)
        self.apply_shared(worker.id, load, now)
        self.metrics.redecided.inc()
        decision = self.decide(req, now)
        again = self.fleet.worker(decision.worker) if decision.worker is not None else None
        if again is None:
            raise self._shed(req, decision)
        return self._book(req, decision, again, ticket.timeout_s, confirm=False)

    async def infer(self, call: InferCall) -> InferResult:
        """Route and forward one inference request: :meth:`begin`, send, :meth:`end`.

        A failed attempt is sent once more elsewhere when :mod:`gateway.core.retry` allows.

        Raises:
            BadRequest: a hint is malformed.
            ModelNotFound: no worker serves the model.
            Shed: the policy shed it, or the gateway is full for its priority
                (:mod:`gateway.core.admission`).
            NoHealthyWorker: every worker serving the model is down.
            UpstreamTimeout, UpstreamError: the worker did not answer (after one retry where
                :mod:`gateway.core.retry` allows it).
        """
        upstream = self.upstreams.get(call.protocol)
        if upstream is None:
            raise GatewayError(f"no upstream registered for protocol {call.protocol!r}")
        ticket = await self.confirm(self.begin(call, confirm=True))
        try:
            try:
                result = await self._send(call, ticket, upstream)
            except (UpstreamError, UpstreamTimeout) as exc:
                return await self._retry(call, ticket, upstream, exc)
            if outcome_of(result.response) is Outcome.ERROR:  # the worker's fault
                return await self._retry(call, ticket, upstream, result)
            return result
        except (UpstreamError, UpstreamTimeout, ClientDeadlineExceeded):
            req = ticket.req
            self.metrics.slo_violations.labels(req.model, str(req.priority), "failed").inc()
            raise

    def _overloaded(self, model: str, priority: int) -> GatewayError:
        """The error for a request the gateway is too full to admit (503 if none is healthy)."""
        self.metrics.slo_violations.labels(model, str(priority), "shed").inc()
        if not self.fleet.any_routable(model):
            self.metrics.shed.labels("no_worker").inc()
            return NoHealthyWorker(f"no healthy worker serves model '{model}'")
        self.metrics.shed.labels("overload").inc()
        return Shed(
            f"gateway overloaded: {self.inflight} requests in flight "
            f"(limit {self.admission.limit(priority)} at priority {priority})",
            retry_after_s=1,
            why="overload",
        )

    async def _retry(
        self,
        call: InferCall,
        first_try: Ticket,
        upstream: Upstream,
        outcome: GatewayError | InferResult,
    ) -> InferResult:
        """Send a failed request once more, elsewhere, when :mod:`gateway.core.retry` allows.

        Returns the retry's result, or the first attempt's (re-raising its error) when no retry
        is allowed: not retry-safe, no SLO or time left, no other worker, budget spent.
        """
        req, failed = first_try.req, first_try.worker
        first = outcome.response if isinstance(outcome, InferResult) else outcome
        why = retry_reason(first, self.model_defaults(call.model).idempotent)

        def give_up(result: str | None) -> InferResult:
            if why is not None and result is not None:
                self.metrics.retries.labels(why, result).inc()
            if isinstance(outcome, InferResult):
                return outcome
            raise outcome

        if why is None:
            return give_up(None)
        now = self.clock.now()
        elapsed_ms = (now - req.arrival) * 1000.0
        left_ms = min(req.slo_ms, first_try.timeout_s * 1000.0) - elapsed_ms
        if left_ms <= 0:
            return give_up("slo")
        again = Request(req.model, left_ms, req.batch, req.priority, req.category, now)
        decision = self._choose_excluding(again, failed.id, now)
        worker = self.fleet.worker(decision.worker) if decision.worker is not None else None
        if worker is None or worker.id == failed.id:
            return give_up("no_worker")
        if math.isfinite(decision.predicted_ms) and decision.predicted_ms > left_ms:
            return give_up("slo")
        if not self.retry_budget.try_spend():
            return give_up("budget")
        self.metrics.retries.labels(why, "sent").inc()
        ticket = self._book(again, decision, worker, left_ms / 1000.0)
        return await self._send(call, ticket, upstream)

    def _choose_excluding(self, req: Request, worker_id: str, now: float) -> Decision:
        """The policy's choice with ``worker_id`` out of rotation for this one decision.

        The worker is marked down in the view and restored right after, with no ``await`` in
        between, so no other request can see the change.
        """
        state = self.view.state(worker_id) if self.fleet.worker(worker_id) is not None else None
        hide = state is not None and state.available(now)
        if hide:
            self.view.set_healthy(worker_id, False, now)
        try:
            return self.decide(req, now)
        finally:
            if hide:
                self.view.set_healthy(worker_id, True, now)

    async def _send(self, call: InferCall, ticket: Ticket, upstream: Upstream) -> InferResult:
        """Forward ``call`` to the ticket's worker and :meth:`end` the ticket, whatever happens.

        Until an answer or an error arrives the attempt counts as cancelled (the client went
        away: code 499, no latency).
        """
        worker, req = ticket.worker, ticket.req
        latency_ms: float | None = None
        result: UpstreamResponse | GatewayError | None = None  # None: cancelled (client left)
        try:
            resp = await upstream.call(
                worker, call.target, call.body, call.headers, ticket.timeout_s
            )
            result = resp = triton_client_error(resp)  # Triton's 500 for unparsable data: 400
            latency_ms = (self.clock.now() - req.arrival) * 1000.0
            return InferResult(resp, worker, ticket.decision, ticket.policy, latency_ms)
        except GatewayError as exc:
            result = exc
            raise
        finally:
            outcome = outcome_of(result)  # the one classification (gateway.core.calls)
            if isinstance(result, GatewayError) and outcome in UPSTREAM_ERROR_KIND:
                self.metrics.upstream_errors.labels(worker.id, UPSTREAM_ERROR_KIND[outcome]).inc()
            self.end(
                ticket, outcome, latency_ms, "499" if result is None else str(result.http_status)
            )

    def _observe(
        self, req: Request, decision: Decision, worker: WorkerInfo, ok: bool, latency_ms: float
    ) -> None:
        m = self.metrics
        m.duration.labels(req.model, worker.pool).observe(latency_ms / 1000.0)
        if not ok:
            m.slo_violations.labels(req.model, str(req.priority), "failed").inc()
            return
        if latency_ms > req.slo_ms:
            m.slo_violations.labels(req.model, str(req.priority), "late").inc()
        pred = decision.predicted_ms
        if pred > 0 and math.isfinite(pred):
            m.prediction_error.labels(worker.pool).observe(latency_ms / pred)

    def _reserved(self, lease: Lease, fut: asyncio.Future[WorkerLoad | None]) -> None:
        """Feed the reserve's post-op fleet-wide figures to the view (no extra round trip).

        Other replicas' sends since the last refresh are otherwise invisible until then; the
        N-router simulation (docs/benchmarks.md, Replicas) shows this closes part of the 2-vs-1
        replica gap. Skipped once the request has ended: its figures would then be older than
        the local finish (and than the release's figures).
        """
        if lease.token not in self._open or fut.cancelled() or fut.exception() is not None:
            return
        load = fut.result()
        if load is not None:
            self.apply_shared(lease.worker, load, self.clock.now())

    async def _release(
        self,
        reserve: asyncio.Future[WorkerLoad | None],
        lease: Lease,
        ended: Ended | None = None,
        ended_at: float = 0.0,
    ) -> None:
        """Release once the reservation call is over; feed the post-op figures to the view.

        Released even when the reserve call failed: it may have run on the server after the
        client timed out, and a release of an unknown lease is a no-op. ``ended`` (as of
        ``ended_at``) re-anchors the shared shadow queue on the request's true end.
        """
        try:
            reserved = await reserve
        except Exception:  # a store must not raise; be safe anyway
            log.exception("state reserve failed")
            reserved = None
        if reserved is None:
            self.metrics.state_errors.inc()
        if ended is not None and ended.ago_us is not None:  # time since the end, at the call
            ended = Ended(ago_us=ended.ago_us + int((self.clock.now() - ended_at) * 1e6))
        load = await self.store.release(lease, ended)
        self._held[lease.worker] -= 1
        if load is None:
            self.metrics.state_errors.inc()
            return
        self.apply_shared(lease.worker, load, self.clock.now())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # ensure_future: 0.5 µs more
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for background releases (shutdown)."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout_s)

    # -- metadata and readiness ------------------------------------------------------------------

    async def forward_meta(
        self,
        model: str,
        target: str,
        headers: Mapping[str, str],
        protocol: str = "http",
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> tuple[UpstreamResponse, WorkerInfo]:
        """Forward a metadata / ready call to a healthy, undrained worker serving ``model``.

        Round robin over them; the one choice for REST and gRPC alike, so both doors honour
        drain and health the same way.

        Args:
            model: the model the call names.
            target: REST path or gRPC method name.
            headers: headers / metadata to forward.
            protocol: the upstream to use (``"http"`` or ``"grpc"``).
            body: request bytes (gRPC: the serialized request; REST: ``None``, a GET).
            timeout_s: the caller's bound (a client deadline); at most 10 s and the request
                timeout.

        Raises:
            ModelNotFound: no worker serves the model.
            NoHealthyWorker: none of them is healthy.
            UpstreamTimeout, UpstreamError: the worker did not answer.
        """
        worker = self.fleet.meta_worker(model)
        upstream = self.upstreams[protocol]
        timeout = min(self.config.request_timeout_s, 10.0)
        if timeout_s is not None:
            timeout = min(timeout, timeout_s)
        return await upstream.call(worker, target, body, headers, timeout), worker
