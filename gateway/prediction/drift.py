"""Profile drift: live service times compared with the offline profile, per (worker, model).

**Sample.** When a request to worker ``w`` (architecture ``a``, pool round trip ``rtt`` ms)
for model ``m`` at batch ``b`` succeeds with client latency ``L`` (ms), its service time on
the server is estimated as::

    A = L - rtt - W0                    (ms)

with ``W0`` the wait for a free slot the routing view predicted when the request was sent
(its shadow queue, :func:`gateway.prediction.model.shadow_wait_ms`; 0 on an idle worker).
``A`` also holds the transport overhead the profile leaves out (0.5-2.5 ms per request on a
loaded 2-core box, see ``workers/profiler.py``), so a profile with p50 under ~4 ms reads
slow by that much. The drift sample is the log ratio to the profile's median at that batch::

    x = ln(A / p50_am(b))

**Estimate.** Per (worker, m) the last ``MAX_SAMPLES`` samples are kept (a ring of floats,
no allocation per sample). The drift ratio is the median over the samples of the last
``WINDOW_S`` seconds, or over the latest ``MIN_SAMPLES`` when the window holds fewer::

    r = exp(clip(median(x_i), -CLIP, +CLIP))      CLIP = ln 16
                                        (dimensionless; 1.0 = as profiled, 3.0 = 3x slower)

The ring holds ``A / p50`` itself (the median commutes with ``ln``), so a sample costs a
division and two list stores; the logs are taken once per evaluation.

A median rather than an EWMA: a spike moves it only once it covers half the window, whatever
its height, and a log-normal service has ``E[median ln(A/p50)] = 0``.

**Verdict, with hysteresis.** With ``n >= MIN_SAMPLES`` samples, a worker not drifting starts
drifting when ``|ln r| >= ln ENTER_RATIO`` has held for ``HOLD_S`` seconds; a drifting one
clears when ``|ln r| <= ln EXIT_RATIO`` has held for ``HOLD_S``. Both directions count (a
profile too pessimistic is drift too). Between ``EXIT_RATIO`` and ``ENTER_RATIO`` the verdict
stays as it is, so noise around one threshold cannot make it flap. Evaluation is lazy: at
most once per ``EVAL_S`` per (worker, model) on the request path, and on every read (ops
endpoint, metrics scrape). Without new samples the verdict stays: no news is not good news.

Detection delay after a step change, at ``q`` samples/s on one (worker, model): the median
flips once new samples are half of those in the window, ``min(WINDOW_S * q, MAX_SAMPLES) /
(2q)`` seconds, then ``HOLD_S``: about 3.6 s at 100 req/s, 8 s at 5 req/s.

**Observed service times, for new profiles.** Per (arch, m, b), aggregated over the workers of
an architecture, the last ``RESERVOIR`` values of ``A`` are kept (a ring of 8-byte floats: at
most 8 KiB per key; keys are bounded by the profiles since ``b <= max_batch``), served with
p50/p99 by ``GET /synergai/v1/observed`` (:meth:`DriftMonitor.observed`).
:func:`run_profile_from_live` turns that document into profile files (DESIGN.md §5).
Figures, measured delays and limits: ``docs/drift.md``.
"""

from __future__ import annotations

import bisect
import datetime
import json
import math
import statistics
import sys
import urllib.request
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.core.clock import Clock
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import Profile, ProfileBook
from gateway.routing.types import WorkerInfo

if TYPE_CHECKING:  # the routing view imports gateway.prediction
    from gateway.routing.view import FleetView

__all__ = [
    "CLIP",
    "ENTER_RATIO",
    "EVAL_S",
    "EXIT_RATIO",
    "HOLD_S",
    "MAX_SAMPLES",
    "MIN_SAMPLES",
    "RESERVOIR",
    "WINDOW_S",
    "DriftConfig",
    "DriftDetector",
    "DriftMonitor",
    "ServiceRing",
    "quantile",
    "render_live_profiles",
    "run_profile_from_live",
]

ENTER_RATIO = 1.5
"""Drift starts beyond ``r >= 1.5`` or ``r <= 1/1.5``: well past the online correction's
everyday range and ~5 standard errors of a 20-sample median of a log-normal with
``sigma = 0.3`` (``1.2533 * sigma / sqrt(20) = 0.084`` vs ``ln 1.5 = 0.405``)."""
EXIT_RATIO = 1.25
"""Drift clears within ``1/1.25 <= r <= 1.25``; the gap to ``ENTER_RATIO`` (0.18 in log) is
two standard errors wide, so the flag does not flap on noise."""
WINDOW_S = 10.0
"""Seconds of samples the median looks at (at most ``MAX_SAMPLES`` of them)."""
MAX_SAMPLES = 128
"""Samples kept per (worker, model): 2 KiB of floats."""
MIN_SAMPLES = 20
"""No verdict change on fewer samples."""
HOLD_S = 3.0
"""Seconds a crossing must persist before the verdict changes (a 2 s spike never flags)."""
EVAL_S = 0.25
"""Least interval (s) between two evaluations of one (worker, model) on the request path."""
CLIP = math.log(16.0)
"""Largest ``|ln r|`` reported (a ratio within [1/16, 16])."""
RESERVOIR = 1024
"""Recent service times kept per (arch, model, batch) for ``/synergai/v1/observed``."""
PROFILE_MIN_SAMPLES = 20
"""A batch size observed fewer times is not written as measured by the live profile."""


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """The constants above, overridable for tests and experiments."""

    enter_ratio: float = ENTER_RATIO
    exit_ratio: float = EXIT_RATIO
    window_s: float = WINDOW_S
    max_samples: int = MAX_SAMPLES
    min_samples: int = MIN_SAMPLES
    hold_s: float = HOLD_S
    eval_s: float = EVAL_S
    clip: float = CLIP
    reservoir: int = RESERVOIR


class DriftDetector:
    """Drift of one (worker, model); see the module docstring.

    Attributes:
        ratio: ``r``, the windowed median ratio of live service time to profile p50, as of
            the last evaluation (1.0 before any sample).
        used: samples that median was taken over.
        total: samples seen since start.
        drifting: the verdict.
    """

    __slots__ = (
        "_enter",
        "_exit",
        "_i",
        "_next_eval",
        "_since",
        "_ts",
        "_xs",
        "cfg",
        "drifting",
        "ratio",
        "total",
        "used",
    )

    def __init__(self, cfg: DriftConfig | None = None) -> None:
        self.cfg = cfg = cfg or DriftConfig()
        self._xs = [0.0] * cfg.max_samples
        self._ts = [0.0] * cfg.max_samples
        self._i = 0
        self._enter = math.log(cfg.enter_ratio)
        self._exit = math.log(cfg.exit_ratio)
        self._next_eval = -math.inf
        self._since: float | None = None
        self.total = 0
        self.used = 0
        self.ratio = 1.0
        self.drifting = False

    def add(self, actual_ms: float, reference_ms: float, now: float) -> None:
        """Fold in one service time ``actual_ms`` against the profile's ``reference_ms``.

        The ring keeps the plain ratio ``A / p50``: ``ln`` is monotonic, so the median of the
        logs is the log of the median, and the log and the clip are taken once per evaluation.
        """
        i = self._i
        self._xs[i] = actual_ms / reference_ms
        self._ts[i] = now
        self._i = i + 1 if i + 1 < len(self._xs) else 0
        self.total += 1
        if now >= self._next_eval:
            self.evaluate(now)

    def evaluate(self, now: float) -> None:
        """Recompute ``ratio`` and apply the verdict rules at ``now`` (seconds)."""
        cfg = self.cfg
        self._next_eval = now + cfg.eval_s
        n = min(self.total, cfg.max_samples)
        if n == 0:
            return
        i = self._i if self.total >= cfg.max_samples else 0
        xs = self._xs[i:n] + self._xs[:i]  # oldest first
        ts = self._ts[i:n] + self._ts[:i]
        start = min(bisect.bisect_left(ts, now - cfg.window_s), max(n - cfg.min_samples, 0))
        window = sorted(xs[start:])
        k = len(window)
        lo, hi = window[(k - 1) // 2], window[k // 2]
        mid = math.sqrt(lo * hi) if lo > 0.0 else lo  # geometric: the median of the logs
        clip = cfg.clip
        med = min(max(math.log(mid) if mid > 0.0 else -clip, -clip), clip)
        self.ratio = math.exp(med)
        self.used = k
        if k < cfg.min_samples:
            self._since = None
            return
        dev = abs(med)
        want = dev > self._exit if self.drifting else dev >= self._enter
        if want == self.drifting:
            self._since = None
        elif self._since is None:
            self._since = now
        if self._since is not None and now - self._since >= cfg.hold_s:
            self.drifting = want
            self._since = None

    def as_json(self, now: float) -> dict[str, Any]:
        """``{ratio, samples, drifting}`` evaluated at ``now`` (the ``/workers`` drift field)."""
        self.evaluate(now)
        return {"ratio": round(self.ratio, 4), "samples": self.used, "drifting": self.drifting}


class ServiceRing:
    """The last ``size`` service times (ms) of one (arch, model, batch), and how many were seen."""

    __slots__ = ("_buf", "_i", "total")

    def __init__(self, size: int = RESERVOIR) -> None:
        self._buf = array("d", bytes(8 * size))
        self._i = 0
        self.total = 0

    def add(self, ms: float) -> None:
        """Keep one service time, dropping the oldest when full."""
        i = self._i
        self._buf[i] = ms
        self._i = i + 1 if i + 1 < len(self._buf) else 0
        self.total += 1

    def values(self) -> list[float]:
        """The kept service times, sorted."""
        return sorted(self._buf[: min(self.total, len(self._buf))])


def quantile(sorted_ms: list[float], q: float) -> float:
    """Linearly interpolated quantile ``q`` in [0, 1] of sorted values (numpy's default)."""
    if not sorted_ms:
        return math.nan
    pos = q * (len(sorted_ms) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (pos - lo) * (sorted_ms[hi] - sorted_ms[lo])


class _WaitView(Protocol):
    def state(self, worker_id: str) -> Any:
        """The worker's live state; it has ``wait_at(now) -> ms`` and ``rtt_ms``."""


class DriftMonitor:
    """Every detector and service ring of one gateway; fed by :meth:`observe`.

    Args:
        profiles: the profile book routing uses (the reference).
        clock: for metric scrapes (seconds).
        metrics: where ``synergai_profile_drift_ratio`` / ``synergai_profile_drift`` live.
        view: the routing view, for the predicted wait at dispatch (:meth:`wait_ms`).
        config: the constants.
    """

    def __init__(
        self,
        profiles: ProfileBook,
        clock: Clock,
        metrics: GatewayMetrics | None = None,
        view: _WaitView | None = None,
        config: DriftConfig | None = None,
    ) -> None:
        self.book = profiles
        self.clock = clock
        self.metrics = metrics
        self.view = view
        self._state = None if view is None else view.state
        self.cfg = config or DriftConfig()
        self._detectors: dict[tuple[str, str], tuple[DriftDetector, Profile]] = {}
        self._by_worker: dict[str, dict[str, DriftDetector]] = {}
        self._rings: dict[tuple[str, str, int], ServiceRing] = {}
        self._ring_workers: dict[tuple[str, str], set[str]] = {}

    @classmethod
    def for_view(
        cls, view: FleetView, clock: Clock, metrics: GatewayMetrics | None = None
    ) -> DriftMonitor:
        """A monitor over the profiles and live queues of ``view``."""
        return cls(view.book, clock, metrics, view)

    def wait_ms(self, worker_id: str, now: float) -> float:
        """Predicted wait (ms) for a slot on ``worker_id`` if sent at ``now`` (0 if unknown).

        Call it just before the view is told of the start (``W0`` of the module docstring).
        """
        state = self._state
        if state is None:
            return 0.0
        try:
            wait: float = state(worker_id).wait_at(now)
        except KeyError:
            return 0.0
        return wait

    def observe(
        self,
        worker: WorkerInfo,
        model: str,
        batch: int,
        latency_ms: float,
        wait_ms: float,
        now: float,
    ) -> None:
        """One successful request: client latency ``latency_ms``, predicted wait ``wait_ms``."""
        key = (worker.id, model)
        hit = self._detectors.get(key)
        if hit is None:
            hit = self._add(worker, model)
            if hit is None:
                return
        det, prof = hit
        rtt = worker.rtt_ms
        if self._state is not None:  # the view's rtt: + the path's fixed cost (overhead_ms)
            try:
                rtt = self._state(worker.id).rtt_ms
            except KeyError:
                pass
        actual = latency_ms - rtt - wait_ms
        det.add(actual, prof.p50(batch), now)
        rkey = (worker.arch, model, batch)
        ring = self._rings.get(rkey)
        if ring is None:
            ring = self._rings[rkey] = ServiceRing(self.cfg.reservoir)
            self._ring_workers.setdefault((worker.arch, model), set()).add(worker.id)
        ring.add(actual if actual > 0.0 else 0.0)

    def _add(self, worker: WorkerInfo, model: str) -> tuple[DriftDetector, Profile] | None:
        prof = self.book.get(worker.arch, model)
        if prof is None:
            return None
        det = DriftDetector(self.cfg)
        self._detectors[(worker.id, model)] = (det, prof)
        self._by_worker.setdefault(worker.id, {})[model] = det
        self._ring_workers.setdefault((worker.arch, model), set()).add(worker.id)
        if self.metrics is not None:
            clock = self.clock

            def ratio() -> float:
                det.evaluate(clock.now())
                return det.ratio

            def flag() -> float:
                det.evaluate(clock.now())
                return 1.0 if det.drifting else 0.0

            self.metrics.profile_drift_ratio.labels(worker.id, model).set_function(ratio)
            self.metrics.profile_drift.labels(worker.id, model).set_function(flag)
        return det, prof

    def detector(self, worker_id: str, model: str) -> DriftDetector | None:
        """The detector of (worker, model), once it has seen a sample."""
        return self._by_worker.get(worker_id, {}).get(model)

    def worker_drift(self, worker_id: str, now: float) -> dict[str, dict[str, Any]]:
        """``{model: {ratio, samples, drifting}}`` of one worker (models observed so far)."""
        return {m: d.as_json(now) for m, d in self._by_worker.get(worker_id, {}).items()}

    def drifting(self, now: float) -> list[tuple[str, str]]:
        """Every (worker, model) drifting at ``now``."""
        out = []
        for w, dets in self._by_worker.items():
            for m, d in dets.items():
                d.evaluate(now)
                if d.drifting:
                    out.append((w, m))
        return out

    def observed(self) -> dict[str, Any]:
        """The ``GET /synergai/v1/observed`` document.

        ``observed``: one row per (arch, model, batch) with ``samples`` (kept), ``total``
        (seen), ``p50_ms``, ``p99_ms``, ``mean_ms`` of the kept service times and the profile's
        ``profile_p50_ms`` / ``profile_p99_ms`` at that batch; ``profiles``: the profile in use
        for each (arch, model) observed (``max_batch``, ``engine``, ``latency_ms``), keyed
        ``"arch/model"``.
        """
        rows: list[dict[str, Any]] = []
        profiles: dict[str, Any] = {}
        for (arch, model, batch), ring in sorted(self._rings.items()):
            vals = ring.values()
            prof = self.book.get(arch, model)
            row: dict[str, Any] = {
                "arch": arch,
                "model": model,
                "batch": batch,
                "samples": len(vals),
                "total": ring.total,
                "p50_ms": round(quantile(vals, 0.5), 4),
                "p99_ms": round(quantile(vals, 0.99), 4),
                "mean_ms": round(sum(vals) / len(vals), 4),
                "workers": sorted(self._ring_workers.get((arch, model), ())),
            }
            if prof is not None:
                row["profile_p50_ms"] = round(prof.p50(batch), 4)
                row["profile_p99_ms"] = round(prof.p99(batch), 4)
                profiles[f"{arch}/{model}"] = {
                    "max_batch": prof.max_batch,
                    "engine": prof.engine,
                    "latency_ms": {str(p.batch): {"p50": p.p50, "p99": p.p99} for p in prof.points},
                }
            rows.append(row)
        return {"reservoir": self.cfg.reservoir, "observed": rows, "profiles": profiles}


# -- profile --from-live ------------------------------------------------------------------------


def _yaml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def render_live_profiles(
    doc: Mapping[str, Any], url: str, date: str, min_samples: int = PROFILE_MIN_SAMPLES
) -> dict[tuple[str, str], str]:
    """Profile files (DESIGN.md §5 text) from a ``/synergai/v1/observed`` document.

    Per (arch, model): every batch size observed at least ``min_samples`` times gets the
    observed ``p50`` / ``p99`` (``p99 >= p50``). Batch sizes the gateway's profile lists but
    that were not observed enough are kept, scaled by the median over the observed batch sizes
    of ``observed p50 / profile p50``, so interpolation in batch stays sane; ``source`` says
    which. ``max_batch`` is the profile's, else the largest observed batch.

    Returns:
        ``{(arch, model): file text}``; a pair with no well-observed batch size is left out.
    """
    by_pair: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in doc.get("observed", []):
        if int(row["samples"]) >= min_samples and float(row["p50_ms"]) > 0:
            by_pair.setdefault((str(row["arch"]), str(row["model"])), []).append(row)
    out: dict[tuple[str, str], str] = {}
    for (arch, model), rows in sorted(by_pair.items()):
        prof = doc.get("profiles", {}).get(f"{arch}/{model}", {})
        points: dict[int, tuple[float, float]] = {}
        ratios = []
        for r in rows:
            p50, p99 = float(r["p50_ms"]), float(r["p99_ms"])
            points[int(r["batch"])] = (p50, max(p99, p50))
            if r.get("profile_p50_ms"):
                ratios.append(p50 / float(r["profile_p50_ms"]))
        n = sum(int(r["total"]) for r in rows)
        source = (
            f"observed live through the gateway at {url} on {date}, {n} samples "
            f"(batch {', '.join(str(b) for b in sorted(points))}"
        )
        scaled = []
        if ratios:
            k = statistics.median(ratios)
            for b, pt in prof.get("latency_ms", {}).items():
                if int(b) not in points:
                    points[int(b)] = (pt["p50"] * k, pt["p99"] * k)
                    scaled.append(int(b))
        if scaled:
            source += f"; batch {', '.join(map(str, sorted(scaled)))}: profile x {k:.3f}"
        source += ")"
        max_batch = max(int(prof.get("max_batch", 0)), max(points))
        lines = [
            "# Written by synergai profile --from-live: service time = client latency at the",
            "# gateway - pool rtt - predicted queue wait (gateway/prediction/drift.py).",
            f"arch: {arch}",
            f"model: {model}",
            f"engine: {_yaml_str(str(prof.get('engine', '')))}",
            f"source: {_yaml_str(source)}",
            f"max_batch: {max_batch}",
            "latency_ms:",
        ]
        for b in sorted(points):
            p50, p99 = points[b]
            lines.append(f"  {b}: {{p50: {max(p50, 1e-3):.4g}, p99: {max(p99, p50, 1e-3):.4g}}}")
        out[(arch, model)] = "\n".join(lines) + "\n"
    return out


def run_profile_from_live(gateway_url: str, out: Path | None) -> int:
    """``synergai profile --from-live URL [--out DIR]``: profiles from what a gateway observed.

    Fetches ``GET URL/synergai/v1/observed`` and writes ``DIR/<arch>/<model>.yaml`` for every
    (arch, model) observed (:func:`render_live_profiles`); ``DIR`` defaults to
    ``profiles-live/`` and loads as a profiles directory (DESIGN.md §5).

    Returns:
        0 on success, 2 if the gateway cannot be read, 3 if nothing was observed enough.
    """
    base = gateway_url.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    try:
        with urllib.request.urlopen(base + "/synergai/v1/observed", timeout=10) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {base}/synergai/v1/observed: {exc}", file=sys.stderr)
        return 2
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    files = render_live_profiles(doc, base, date)
    if not files:
        print(
            f"error: {base} has observed no (arch, model, batch) {PROFILE_MIN_SAMPLES} times",
            file=sys.stderr,
        )
        return 3
    directory = Path("profiles-live") if out is None else Path(out)
    for (arch, model), text in files.items():
        path = directory / arch / f"{model}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0
