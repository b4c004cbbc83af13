"""The live path's fixed cost per request, measured on this machine (issue 15.7).

``bench --compare-sim`` calls :func:`calibrate` before its live run (``--overhead-ms auto``):
the calibration scenario (``loadtest/live/calibrate/overhead.yaml``: one emulated Triton server,
one slot, :data:`RTT_MS` through the delay relay as on every pool with an rtt, a model that
always takes :data:`SERVICE_MS`, a request every 50 ms so none ever waits) is replayed through
one ``synergai serve`` (``round_robin``) with the bench's own open-loop client, so everything a
request costs beyond its service and rtt is the path's own: the client (and its lag), the
gateway, the relay's timers, Triton's HTTP front end, the ensemble, the python-backend IPC and
sleep overshoot. From it (``base = SERVICE_MS + RTT_MS``):

* the simulator's ``overhead_ms`` = ``{p50, p99}`` of ``client latency - base``, split into
  the part on the device slot (``device``: each execution's time past its emulated deadline,
  from the emulated model's execution log) and the rest (:meth:`Calibration.overhead`);
* the live gateways' ``overhead_ms`` setting = the part their own latency measurement contains
  (mean of ``synergai_request_duration_seconds`` minus ``base``): what the client and the
  gateway's front end add before and after it, the gateway cannot see, and telling it would
  bias its online correction (it would subtract a cost its figures do not include).

It is measured rather than fixed because it is mostly CPU time on a shared 2-core machine: it
grows with the load average and with the request rate the host serves (the client, the
gateway and Triton's front end queue for the same cores). So ``bench`` calibrates at the
rate of the run it compares (:func:`at_rate`: Poisson arrivals at the run's mean rate, enough
instance slots that a 5 ms request practically never waits for one); the file's own
20 requests/s, constant, is the low-rate floor. ``docs/benchmarks.md`` (Simulator vs live)
has the figures.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.scenario import LogNormalMs, Overhead, Scenario

__all__ = [
    "CALIBRATION",
    "RTT_MS",
    "SATURATED_X",
    "SERVICE_MS",
    "TRACE_ENV",
    "Calibration",
    "at_rate",
    "calibrate",
    "device_ms",
]

CALIBRATION = Path(__file__).resolve().parent / "live" / "calibrate" / "overhead.yaml"
"""The calibration scenario."""
SERVICE_MS = 5.0
"""Its model's fixed service time (ms)."""
RTT_MS = 1.0
"""Its pool's rtt (ms)."""
TRACE_ENV = "SYNERGAI_EMULATION_TRACE"
"""The emulated model's execution log directory (``workers/models/emulated/model.py``)."""
SATURATED_X = 10.0
"""An overhead above this many times :data:`SERVICE_MS` at the median means a saturated host."""


@dataclass(frozen=True)
class Calibration:
    """One measurement (ms; the client's view unless said otherwise).

    Attributes:
        p50_ms: median of ``client latency - SERVICE_MS - RTT_MS``.
        p99_ms: its 99th percentile.
        mean_ms: its mean.
        gateway_ms: mean of the gateway's own measurement minus the same and minus the
            device part's mean (>= 0).
        requests: answered requests it is based on.
        loadavg: 1-minute load average before and after.
        rate_rps: the mean rate it was measured at (requests/s).
    """

    p50_ms: float
    p99_ms: float
    mean_ms: float
    gateway_ms: float
    requests: int
    loadavg: tuple[float, float]
    rate_rps: float = 20.0
    device_p50_ms: float = 0.0
    device_p99_ms: float = 0.0
    device_mean_ms: float = 0.0

    @property
    def saturated(self) -> bool:
        """The host could not carry the rate: the median request took over 10x its service."""
        return self.p50_ms > SATURATED_X * SERVICE_MS

    def overhead(self) -> Overhead:
        """The simulator's ``overhead_ms``: outside the slot, and ``device`` on it.

        The split is by distribution, not per request: outside ``p50`` = total ``p50`` minus
        the device part's ``p50``, outside ``p99`` = total ``p99`` minus its mean.
        """
        dev = None
        if self.device_p50_ms > 0:
            d50 = round(self.device_p50_ms, 3)
            dev = LogNormalMs(p50=d50, p99=round(max(d50, self.device_p99_ms), 3))
        p50 = max(0.0, self.p50_ms - self.device_p50_ms)
        p99 = max(p50, self.p99_ms - self.device_mean_ms)
        return Overhead(p50=round(p50, 3), p99=round(p99, 3), device=dev)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded."""
        d = asdict(self)
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()}


def duration_seconds(metrics: str) -> tuple[float, float]:
    """``(sum s, count)`` of ``synergai_request_duration_seconds`` in a ``/metrics`` text."""
    total = count = 0.0
    pat = re.compile(r"synergai_request_duration_seconds_(sum|count)(?:\{[^}]*\})? (\S+)")
    for line in metrics.splitlines():
        m = pat.match(line)
        if m:
            if m.group(1) == "sum":
                total += float(m.group(2))
            else:
                count += float(m.group(2))
    return total, count


def at_rate(rate_rps: float) -> Scenario:
    """The calibration scenario at ``rate_rps`` (Poisson), with slots to spare for it.

    Slots: ``ceil(2 x offered load) + 2`` (offered load = rate x 5 ms), at most 8; at 500
    requests/s that is 7 slots for 2.5 busy on average, so the wait for a slot stays well
    under a millisecond even at its p99.
    """
    from gateway.scenario import load_scenario
    from loadtest.bench_workload import keep_private

    sc = load_scenario(CALIBRATION)
    if rate_rps <= 0:
        return sc
    slots = min(8, math.ceil(2.0 * rate_rps * SERVICE_MS / 1000.0) + 2)
    wl = sc.workload[0].model_copy(update={"rate_rps": rate_rps, "arrival": "poisson"})
    pool = sc.pools[0].model_copy(update={"instances": slots})
    return keep_private(sc, sc.model_copy(update={"workload": [wl], "pools": [pool]}))


def calibrate(protocol: str = "http", seconds: float = 10.0, rate_rps: float = 0.0) -> Calibration:
    """Measure the fixed cost through one gateway (see the module docstring).

    Args:
        protocol: the client's protocol to the gateway.
        seconds: how long to send.
        rate_rps: at this mean rate (:func:`at_rate`); 0: the file's 20 requests/s, constant.

    Raises:
        RuntimeError: fewer than 20 requests were answered.
    """
    import shutil

    from loadtest.bench import _run_async
    from loadtest.bench_stack import LiveStack
    from loadtest.bench_workload import live_trace, scenario_for_run
    from loadtest.client import Payloads
    from loadtest.loops import replay

    sc = scenario_for_run(at_rate(rate_rps), seconds)
    trace = live_trace(sc)
    wd = Path(tempfile.mkdtemp(prefix="synergai-calibrate-"))
    load0 = os.getloadavg()[0]
    executions = wd / "executions"
    executions.mkdir()
    env_was = os.environ.get(TRACE_ENV)
    os.environ[TRACE_ENV] = str(executions)  # the fleet's servers inherit it at start
    try:
        with LiveStack(sc, wd, progress=False) as stack:
            if env_was is None:
                os.environ.pop(TRACE_ENV, None)
            else:
                os.environ[TRACE_ENV] = env_was
            gw = stack.start_gateways("round_robin")[0]
            target = gw.url if protocol == "http" else gw.grpc_target
            s0, c0 = duration_seconds(gw.metrics())
            since = time.time()
            outcomes = _run_async(
                replay(
                    trace,
                    [target],
                    "grpc" if protocol == "grpc" else "http",
                    timeout_s=5.0,
                    payloads=Payloads(),
                    on_start=stack.fleet.reset_clock,
                )
            )
            s1, c1 = duration_seconds(gw.metrics())
        device = device_ms(executions, since)
    finally:
        if env_was is None:
            os.environ.pop(TRACE_ENV, None)
        else:
            os.environ[TRACE_ENV] = env_was
        shutil.rmtree(wd, ignore_errors=True)
    base = SERVICE_MS + RTT_MS
    lat = sorted(o.latency_ms - base for o in outcomes if o.status == "ok")
    if len(lat) < 20:
        raise RuntimeError(f"overhead calibration: only {len(lat)} requests answered")
    p99 = _p99(lat)
    dev_mean = statistics.fmean(device) if device else 0.0
    gw_mean = (s1 - s0) / (c1 - c0) * 1000.0 - base - dev_mean if c1 > c0 else 0.0
    return Calibration(
        p50_ms=statistics.median(lat),
        p99_ms=p99,
        mean_ms=statistics.fmean(lat),
        gateway_ms=max(0.0, gw_mean),
        requests=len(lat),
        loadavg=(round(load0, 2), round(os.getloadavg()[0], 2)),
        rate_rps=sc.workload[0].rate_rps,
        device_p50_ms=statistics.median(device) if device else 0.0,
        device_p99_ms=_p99(device) if device else 0.0,
        device_mean_ms=dev_mean,
    )


def _p99(xs: list[float]) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, round(0.99 * (len(ys) - 1)))]


def device_ms(trace_dir: Path, since: float) -> list[float]:
    """Per execution started after ``since`` (epoch s), its time on the slot beyond its
    emulated deadline (ms, >= 0): sleep overshoot and the backend's own work.

    Reads the emulated model's execution log (``SYNERGAI_EMULATION_TRACE``, docs/workers.md).
    """
    out: list[float] = []
    for f in sorted(trace_dir.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
                if r["t0"] >= since:
                    out.append(max(0.0, (r["end"] - r["deadline"]) * 1000.0))
            except (ValueError, KeyError, TypeError):
                continue
    return out
