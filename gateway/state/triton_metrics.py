"""Triton's ``/metrics``: parse the counters routing needs and turn two scrapes into a load.

Triton exposes, per ``{model, version}`` (DESIGN.md §9): ``nv_inference_pending_request_count``
(a gauge: requests queued in the server, not yet executing), and cumulative counters
``nv_inference_exec_count`` (executions finished), ``nv_inference_count`` (inferences finished),
``nv_inference_queue_duration_us`` and ``nv_inference_compute_infer_duration_us`` (time spent
queued and computing by finished requests). A worker's figures are the sum over its models
(a server is one device), **ensembles excluded** (``exclude``).

Why ensembles are left out: Triton counts a request to an ensemble twice, once on the ensemble
and once on each composing model it runs. Measured on Triton 2.51 (the emulated workers: a
public ensemble per model on one python model, ``workers/repository.py``): after 17 requests
the ensembles' ``nv_inference_count``/``exec_count`` summed to 17 and the composing model's to
17; the ensembles' ``compute_infer_duration_us`` was exactly the sum of the composing model's
(0.98 s + 0.80 s = 1.78 s), their queue time only the ensemble scheduler's (~50 µs against
1.28 s in the composing model's queue) and their pending count 0 while the composing model's
read 5. Summing both doubles ``exec_count``, ``inference_count`` and ``compute_us``, so Little's
law below reads twice the load. The composing models (every model that is not an ensemble)
count each execution on the device exactly once; an ensemble adds nothing of its own but
scheduling. Which models are ensembles is not on the page: the caller learns it from the
model configuration (``platform: "ensemble"``, :func:`is_ensemble_config`) and passes their
names (:class:`gateway.state.reconcile.TritonScraper` does, per worker). A model that a
pipeline runs in several steps counts one execution per step; steps of one request run one
after the other, so ``running`` still counts requests in compute (parallel branches of one
request would count once each). Models that call others from their own code (BLS) are not
ensembles in their configuration and are still counted with their callees.

The cumulative figures move only when a request *completes* (triton-inference-server issue
5927), so they describe the last interval, not the present. :func:`derive` turns two
samples ``a`` (older) and ``b`` of one worker, summed over the same models, into a
:class:`TritonLoad`::

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
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TritonLoad",
    "TritonSample",
    "derive",
    "is_ensemble_config",
    "model_names",
    "parse_metrics",
]

_WANTED = {
    "nv_inference_pending_request_count": "pending",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_count": "inference_count",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_infer_duration_us": "compute_us",
}


@dataclass(frozen=True, slots=True)
class TritonSample:
    """One scrape of one worker, summed over its models (ensembles excluded).

    Attributes:
        observed_at: gateway clock (s) when the answer arrived.
        pending: requests queued right now (``nv_inference_pending_request_count``).
        exec_count: executions finished since the server started.
        inference_count: inferences finished since the server started.
        queue_us: cumulative queue time of finished requests, µs.
        compute_us: cumulative compute time of finished requests, µs.
        models: the models summed (two samples compare only over the same set).
    """

    observed_at: float
    pending: float = 0.0
    exec_count: float = 0.0
    inference_count: float = 0.0
    queue_us: float = 0.0
    compute_us: float = 0.0
    models: frozenset[str] = frozenset()


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


def _model_label(labels: str) -> str:
    """The ``model`` label's value in ``{a="x",model="m",...}`` (``""`` when absent)."""
    at = labels.find('model="')
    while at > 0 and labels[at - 1] not in "{, ":
        at = labels.find('model="', at + 1)
    if at < 0:
        return ""
    out: list[str] = []
    i = at + len('model="')
    while i < len(labels):
        ch = labels[i]
        if ch == "\\" and i + 1 < len(labels):
            nxt = labels[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
            continue
        if ch == '"':
            break
        out.append(ch)
        i += 1
    return "".join(out)


def _series(text: str) -> list[tuple[str, str, float]]:
    """``(field, model, value)`` of every wanted series with a finite value."""
    out: list[tuple[str, str, float]] = []
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
        if not math.isfinite(value):
            continue
        close = line.rfind("}", 0, space)
        model = _model_label(line[brace : close + 1]) if 0 <= brace < close else ""
        out.append((field, model, value))
    return out


def model_names(text: str) -> frozenset[str]:
    """Every model with a wanted ``nv_inference_*`` series on the page."""
    return frozenset(model for _, model, _ in _series(text))


def parse_metrics(text: str, observed_at: float, exclude: Collection[str] = ()) -> TritonSample:
    """Sum the wanted ``nv_inference_*`` series over the models of one Prometheus text page.

    Args:
        text: the page.
        observed_at: gateway clock when it arrived.
        exclude: models left out of the sums: the server's ensembles (see the module
            docstring), and any model the caller could not classify yet.

    Lines of other metrics, comments and malformed lines are skipped (a scrape must never
    fail on a metric Triton adds).
    """
    sums = dict.fromkeys(_WANTED.values(), 0.0)
    models: set[str] = set()
    for field, model, value in _series(text):
        if model in exclude:
            continue
        sums[field] += value
        models.add(model)
    return TritonSample(observed_at, **sums, models=frozenset(models))


def is_ensemble_config(config: Mapping[str, Any]) -> bool:
    """Whether a model configuration (``GET /v2/models/{name}/config``) is an ensemble's."""
    if config.get("platform") == "ensemble" or config.get("backend") == "ensemble":
        return True
    scheduling = config.get("ensemble_scheduling")
    return isinstance(scheduling, Mapping) and bool(scheduling.get("step"))


def derive(a: TritonSample | None, b: TritonSample, instances: int) -> TritonLoad:
    """The load over ``(a, b]``; see the module docstring for the formulas.

    With no earlier sample, samples summed over different models (one was loaded, unloaded or
    classified since), or when a counter went backwards (the server restarted), only the
    instantaneous ``pending`` is known and ``running`` is 0.
    """
    nan = math.nan
    if (
        a is None
        or a.models != b.models
        or b.observed_at <= a.observed_at
        or b.exec_count < a.exec_count
    ):
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
