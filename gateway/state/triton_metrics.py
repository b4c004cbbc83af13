"""Triton's ``/metrics``: parse the counters routing needs and turn two scrapes into a load.

Triton exposes, per ``{model, version}`` (DESIGN.md §9): ``nv_inference_pending_request_count``
(a gauge: requests queued in the server, not yet executing), and cumulative counters
``nv_inference_exec_count`` (executions finished), ``nv_inference_count`` (inferences finished),
``nv_inference_queue_duration_us`` and ``nv_inference_compute_infer_duration_us`` (time spent
queued and computing by finished requests). A worker's figures are the sum over its models
(a server is one device).

The cumulative figures move only when a request *completes* (triton-inference-server issue
5927), so they describe the last interval, not the present. :func:`derive` turns two
samples ``a`` (older) and ``b`` of one worker into a :class:`TritonLoad`::

    queued     = b.pending                                      (requests, instantaneous)
    exec_rate  = (b.exec_count - a.exec_count) / dt             (executions per second)
    compute_ms = Δcompute_us / Δinference_count / 1000           (mean compute per request)
    running    = min(instances, exec_rate * compute_ms / 1000)   (Little's law, requests)
    in_server  = queued + running

That is what the gateway's reconciler compares with the fleet-wide leased count in Redis
(:mod:`gateway.state.reconcile`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TritonLoad", "TritonSample", "derive", "parse_metrics"]

_WANTED = {
    "nv_inference_pending_request_count": "pending",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_count": "inference_count",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_infer_duration_us": "compute_us",
}


@dataclass(frozen=True, slots=True)
class TritonSample:
    """One scrape of one worker, summed over its models.

    Attributes:
        observed_at: gateway clock (s) when the answer arrived.
        pending: requests queued right now (``nv_inference_pending_request_count``).
        exec_count: executions finished since the server started.
        inference_count: inferences finished since the server started.
        queue_us: cumulative queue time of finished requests, µs.
        compute_us: cumulative compute time of finished requests, µs.
    """

    observed_at: float
    pending: float = 0.0
    exec_count: float = 0.0
    inference_count: float = 0.0
    queue_us: float = 0.0
    compute_us: float = 0.0


@dataclass(frozen=True, slots=True)
class TritonLoad:
    """What the server held over the last scrape interval.

    Attributes:
        observed_at: when the newer sample arrived (gateway clock, s).
        queued: requests waiting in the server's queue (instantaneous).
        running: mean requests executing over the interval.
        compute_ms: mean compute time per request over the interval (``nan`` if none ended).
        queue_ms: mean queue time per request over the interval (``nan`` if none ended).
    """

    observed_at: float
    queued: float
    running: float
    compute_ms: float
    queue_ms: float

    @property
    def in_server(self) -> float:
        """Requests queued or executing in the server."""
        return self.queued + self.running


def parse_metrics(text: str, observed_at: float) -> TritonSample:
    """Sum the wanted ``nv_inference_*`` series over every model of one Prometheus text page.

    Lines of other metrics, comments and malformed lines are skipped (a scrape must never
    fail on a metric Triton adds).
    """
    sums = dict.fromkeys(_WANTED.values(), 0.0)
    for line in text.splitlines():
        if not line.startswith("nv_inference_"):
            continue
        brace = line.find("{")
        space = line.rfind(" ")
        name = line[:brace] if brace >= 0 else line[: line.find(" ")]
        field = _WANTED.get(name)
        if field is None or space < 0:
            continue
        try:
            value = float(line[space + 1 :])
        except ValueError:
            continue
        if math.isfinite(value):
            sums[field] += value
    return TritonSample(observed_at, **sums)


def derive(a: TritonSample | None, b: TritonSample, instances: int) -> TritonLoad:
    """The load over ``(a, b]``; see the module docstring for the formulas.

    With no earlier sample, or when a counter went backwards (the server restarted), only the
    instantaneous ``pending`` is known and ``running`` is 0.
    """
    nan = math.nan
    if a is None or b.observed_at <= a.observed_at or b.exec_count < a.exec_count:
        return TritonLoad(b.observed_at, b.pending, 0.0, nan, nan)
    dt = b.observed_at - a.observed_at
    d_exec = b.exec_count - a.exec_count
    d_inf = b.inference_count - a.inference_count
    if d_inf <= 0 or d_exec <= 0:
        return TritonLoad(b.observed_at, b.pending, 0.0, nan, nan)
    compute_ms = (b.compute_us - a.compute_us) / d_inf / 1000.0
    queue_ms = (b.queue_us - a.queue_us) / d_inf / 1000.0
    running = min(float(instances), d_exec / dt * max(compute_ms, 0.0) / 1000.0)
    return TritonLoad(b.observed_at, b.pending, running, compute_ms, queue_ms)
