"""``synergai profile``: measure a model on a live Triton worker and write its profile.

For each batch size (powers of two up to ``max_batch``, plus ``max_batch`` itself; the model
config's ``max_batch_size`` by default) and each concurrency level, the profiler warms up, then
keeps ``concurrency`` closed-loop clients busy for ``duration_s`` seconds with
``tritonclient.http`` and records every request's latency at the client. Triton's own counters
(``nv_inference_queue_duration_us``, ``nv_inference_compute_infer_duration_us``,
``nv_inference_count``; or, without a reachable metrics port, the same figures from the
statistics extension) are read before and after each point, so the deltas split a request's
time into queue and compute.

The profile (DESIGN.md §5) takes p50/p99 from the concurrency-1 runs (no queueing). A profile
is a server-side figure (the gateway adds each pool's network round trip on top), so by default
each percentile has the point's mean *transport overhead* taken off: the client's mean latency
minus Triton's mean request duration (``nv_inference_request_duration_us``), i.e. HTTP framing,
loopback and client-library time, 0.5-2.5 ms per request on a busy 2-core machine (the
round-trip test's stderr shows it). ``server_side=False`` keeps raw client percentiles. The
complete table (p90, throughput, queue/compute/overhead for every point) is written as YAML
comments, since the profile format allows no extra keys.

Time bound: ``points x (warm-up + duration_s)``, printed before starting; warm-up is
``min(1 s, duration_s / 4)``; each point is also capped at 200,000 requests.
"""

from __future__ import annotations

import datetime
import re
import shlex
import socket
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Point", "batch_sizes", "measure_point", "render_profile", "run_profile"]

_MAX_REQUESTS = 200_000
_DYNAMIC_DIM = 16
_NP_TYPES = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
    "BYTES": np.object_,
}


@dataclass(frozen=True)
class Point:
    """What one (batch, concurrency) measurement found; times in ms."""

    batch: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50: float
    p90: float
    p99: float
    queue_ms: float | None
    compute_ms: float | None
    overhead_ms: float | None = None
    """Mean client latency minus Triton's mean request duration: HTTP, loopback and client
    library time outside the server."""

    def server_side(self, client_ms: float) -> float:
        """A client latency with the transport overhead taken off (never below 5% of it)."""
        if self.overhead_ms is None:
            return client_ms
        return max(client_ms - self.overhead_ms, client_ms * 0.05)

    @property
    def throughput_rps(self) -> float:
        """Successful requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def items_per_s(self) -> float:
        """Items (requests x batch) per second."""
        return self.throughput_rps * self.batch


def batch_sizes(max_batch: int) -> list[int]:
    """Powers of two up to ``max_batch``, and ``max_batch`` itself (1 for no batching)."""
    out = [1]
    while out[-1] * 2 <= max_batch:
        out.append(out[-1] * 2)
    if out[-1] != max_batch and max_batch > 1:
        out.append(max_batch)
    return out


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return float(np.percentile(np.asarray(sorted_ms), q))


# -- Triton counters --------------------------------------------------------------------------
_METRIC_RE = re.compile(r'^(nv_inference_\w+)\{model="([^"]*)",version="[^"]*"\} ([0-9.eE+-]+)$')


class _Counters:
    """Cumulative queue/compute time (us) and count of one model, from /metrics or stats."""

    def __init__(self, client: Any, model: str, metrics_url: str | None) -> None:
        self._client = client
        self._model = model
        self.metrics_url = metrics_url if metrics_url and self._metrics_ok(metrics_url) else None

    def _metrics_ok(self, url: str) -> bool:
        try:
            return self._from_metrics(url) is not None
        except OSError:
            return False

    def _from_metrics(self, url: str) -> tuple[float, float, float, float] | None:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        vals: dict[str, float] = {}
        for line in text.splitlines():
            m = _METRIC_RE.match(line)
            if m and m.group(2) == self._model:
                vals[m.group(1)] = vals.get(m.group(1), 0.0) + float(m.group(3))
        keys = (
            "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us",
            "nv_inference_request_success",
            "nv_inference_request_duration_us",
        )
        if not all(k in vals for k in keys):
            return None
        return vals[keys[0]], vals[keys[1]], vals[keys[2]], vals[keys[3]]

    def read(self) -> tuple[float, float, float, float]:
        """``(queue_us, compute_infer_us, successful requests, request_us)`` so far."""
        if self.metrics_url is not None:
            got = self._from_metrics(self.metrics_url)
            if got is not None:
                return got
        stats = self._client.get_inference_statistics(self._model)
        queue = compute = count = request = 0.0
        for s in stats.get("model_stats", []):
            inf = s.get("inference_stats", {})
            queue += float(inf.get("queue", {}).get("ns", 0)) / 1000
            compute += float(inf.get("compute_infer", {}).get("ns", 0)) / 1000
            count += float(inf.get("success", {}).get("count", 0))
            request += float(inf.get("success", {}).get("ns", 0)) / 1000
        return queue, compute, count, request


# -- requests ---------------------------------------------------------------------------------
def _input_specs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Inputs to send: every required input, or the first one when all are optional."""
    inputs = list(config.get("input", []))
    required = [i for i in inputs if not i.get("optional", False)]
    return required or inputs[:1]


def _make_inputs(specs: list[dict[str, Any]], batch: int, batched: bool) -> list[Any]:
    import tritonclient.http as httpclient

    out = []
    rng = np.random.default_rng(0)
    for spec in specs:
        dtype = str(spec["data_type"]).removeprefix("TYPE_")
        dtype = "BYTES" if dtype == "STRING" else dtype
        dims = [int(d) if int(d) > 0 else _DYNAMIC_DIM for d in spec.get("dims", [])]
        shape = [batch, *dims] if batched else dims
        np_type = _NP_TYPES.get(dtype)
        if np_type is None:
            raise ValueError(f"input {spec['name']}: unsupported data type {dtype}")
        if np_type is np.object_:
            data = np.full(shape, b"profile", dtype=np.object_)
        else:
            data = rng.random(shape).astype(np_type)
        inp = httpclient.InferInput(spec["name"], shape, dtype)
        inp.set_data_from_numpy(data, binary_data=True)
        out.append(inp)
    return out


def measure_point(
    host: str,
    model: str,
    inputs: list[Any],
    batch: int,
    concurrency: int,
    duration_s: float,
    counters: _Counters,
    warmup_s: float,
) -> Point:
    """Warm up, then run ``concurrency`` closed-loop clients for ``duration_s`` seconds."""
    import tritonclient.http as httpclient

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    phase = {"measure_from": float("inf"), "stop_at": float("inf")}
    start_barrier = threading.Barrier(concurrency + 1)

    def worker(k: int) -> None:
        client = httpclient.InferenceServerClient(host, connection_timeout=60, network_timeout=60)
        try:
            start_barrier.wait(timeout=60)
            sent = 0
            while sent < _MAX_REQUESTS:
                t = time.perf_counter()
                if t >= phase["stop_at"]:
                    break
                try:
                    client.infer(model, inputs)
                except Exception:
                    if t >= phase["measure_from"]:
                        errors[k] += 1
                    continue
                finally:
                    sent += 1
                if t >= phase["measure_from"]:
                    latencies[k].append((time.perf_counter() - t) * 1000)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for th in threads:
        th.start()
    now = time.perf_counter()
    phase["measure_from"] = now + warmup_s
    phase["stop_at"] = now + warmup_s + duration_s
    start_barrier.wait(timeout=60)
    time.sleep(max(0.0, phase["measure_from"] - time.perf_counter()))
    before = counters.read()
    t0 = time.perf_counter()
    for th in threads:
        th.join(timeout=duration_s + warmup_s + 120)
    seconds = time.perf_counter() - t0
    after = counters.read()
    lat = sorted(x for per in latencies for x in per)
    n_triton = after[2] - before[2]
    queue = (after[0] - before[0]) / n_triton / 1000 if n_triton > 0 else None
    compute = (after[1] - before[1]) / n_triton / 1000 if n_triton > 0 else None
    request = (after[3] - before[3]) / n_triton / 1000 if n_triton > 0 else None
    overhead = None
    if request is not None and lat:
        overhead = max(0.0, statistics.fmean(lat) - request)
    return Point(
        batch=batch,
        concurrency=concurrency,
        requests=len(lat),
        errors=sum(errors),
        seconds=seconds,
        p50=_percentile(lat, 50),
        p90=_percentile(lat, 90),
        p99=_percentile(lat, 99),
        queue_ms=queue,
        compute_ms=compute,
        overhead_ms=overhead,
    )


# -- output -----------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def render_profile(
    arch: str,
    model: str,
    engine: str,
    source: str,
    max_batch: int,
    points: list[Point],
    server_side: bool = True,
) -> str:
    """The profile file (DESIGN.md §5) with the full measurement table as comments.

    With ``server_side``, p50/p99 have each point's mean transport overhead subtracted.
    """
    lines = [
        "# Measured by synergai profile. Every point (times in ms; queue/compute from Triton):",
        "# p50/p90/p99 at the client; overhead = client mean - Triton request mean.",
        "#   batch  conc  requests  errors    p50      p90      p99     rps      queue   compute"
        "  overhead",
    ]
    for p in points:
        lines.append(
            f"#   {p.batch:>5}  {p.concurrency:>4}  {p.requests:>8}  {p.errors:>6}  "
            f"{p.p50:7.3f}  {p.p90:7.3f}  {p.p99:7.3f}  {p.throughput_rps:8.1f}  "
            f"{_fmt(p.queue_ms):>7}  {_fmt(p.compute_ms):>7}  {_fmt(p.overhead_ms):>7}"
        )
    lines.append(
        "# latency_ms below: concurrency-1 p50/p99 "
        + (
            "minus the overhead (server-side time; the gateway adds the network)"
            if server_side
            else "at the client"
        )
    )
    lines += [
        f"arch: {arch}",
        f"model: {model}",
        f"engine: {_yaml_str(engine)}",
        f"source: {_yaml_str(source)}",
        f"max_batch: {max_batch}",
        "latency_ms:",
    ]
    for p in points:
        if p.concurrency == 1 and p.requests > 0:
            p50, p99 = (
                (p.server_side(p.p50), p.server_side(p.p99)) if server_side else (p.p50, p.p99)
            )
            lines.append(f"  {p.batch}: {{p50: {p50:.3f}, p99: {max(p99, p50):.3f}}}")
    return "\n".join(lines) + "\n"


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _metrics_guess(url: str) -> str:
    """Triton's default layout: metrics on the HTTP port + 2 (8000 -> 8002)."""
    m = re.match(r"^(?:https?://)?([^:/]+):(\d+)", url)
    if not m:
        return ""
    return f"http://{m.group(1)}:{int(m.group(2)) + 2}/metrics"


def run_profile(
    url: str,
    model: str,
    arch: str,
    out: Path | None,
    max_batch: int | None,
    duration_s: float,
    concurrency: list[int],
    *,
    metrics_url: str | None = None,
    server_side: bool = True,
) -> int:
    """Profile ``model`` on the Triton server at ``url`` and write the profile.

    Args:
        url: Triton HTTP URL (``http://host:port`` or ``host:port``).
        model: model name.
        arch: architecture name written in the profile.
        out: profile file to write; None prints it on stdout.
        max_batch: largest batch to sweep (default: the model config's ``max_batch_size``).
        duration_s: measured seconds per (batch, concurrency) point.
        concurrency: concurrency levels; 1 is always included (the profile comes from it).
        metrics_url: Triton metrics URL (default: HTTP port + 2, else the statistics API).
        server_side: subtract the measured transport overhead from p50/p99 (see module doc).

    Returns:
        0 on success, 2 if the server or model cannot be used, 3 if every request failed.
    """
    import tritonclient.http as httpclient

    host = re.sub(r"^https?://", "", url).rstrip("/")
    levels = sorted({1, *(c for c in concurrency if c >= 1)})
    try:
        client = httpclient.InferenceServerClient(host, connection_timeout=10, network_timeout=30)
        if not client.is_model_ready(model):
            print(f"error: model {model} is not ready at {url}", file=sys.stderr)
            return 2
        config = client.get_model_config(model)
    except Exception as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    config_max = int(config.get("max_batch_size", 0))
    batched = config_max > 0
    top = max(1, min(max_batch or config_max or 1, config_max or 1))
    batches = batch_sizes(top) if batched else [1]
    counters = _Counters(client, model, metrics_url or _metrics_guess(url))
    specs = _input_specs(config)
    warmup_s = min(1.0, duration_s / 4)
    n_points = len(batches) * len(levels)
    print(
        f"profiling {model} at {url} (arch {arch}): batches {batches}, concurrency {levels}, "
        f"{n_points} points, about {n_points * (warmup_s + duration_s):.0f} s; "
        f"queue/compute from {counters.metrics_url or 'the statistics API'}",
        file=sys.stderr,
        flush=True,
    )
    points: list[Point] = []
    for batch in batches:
        inputs = _make_inputs(specs, batch, batched)
        for conc in levels:
            p = measure_point(host, model, inputs, batch, conc, duration_s, counters, warmup_s)
            points.append(p)
            print(
                f"[{len(points)}/{n_points}] batch {batch:>3} conc {conc:>3}: {p.requests} ok "
                f"{p.errors} err, p50 {p.p50:.2f} p90 {p.p90:.2f} p99 {p.p99:.2f} ms, "
                f"{p.throughput_rps:.1f} req/s, queue {_fmt(p.queue_ms)} compute "
                f"{_fmt(p.compute_ms)} ms",
                file=sys.stderr,
                flush=True,
            )
    client.close()
    if not any(p.requests for p in points if p.concurrency == 1):
        print("error: every request failed", file=sys.stderr)
        return 3
    command = shlex.join(
        ["synergai", "profile", "--url", url, "--model", model, "--arch", arch]
        + (["--out", str(out)] if out else [])
        + ([f"--max-batch={max_batch}"] if max_batch else [])
        + [f"--duration={duration_s:g}"]
        + [f"--concurrency={c}" for c in levels]
    )
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    source = f"measured: `{command}` on {socket.gethostname()} at {date}"
    engine = str(config.get("backend") or config.get("platform") or "")
    text = render_profile(arch, model, engine, source, top, points, server_side)
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 0
