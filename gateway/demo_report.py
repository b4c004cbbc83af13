"""What ``synergai demo`` prints: the banner with URLs and sample calls, and result tables.

Tables go to stdout (rich), progress to stderr.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from gateway.api.grpc_example import grpc_sample
from gateway.settings import Settings

__all__ = ["print_banner", "print_policy", "print_summary"]

_console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _sample_model(workers: Sequence[Any]) -> str:
    return str(workers[0].models[0]) if workers else "resnet50"


def print_banner(
    settings: Settings, workers: Sequence[Any], scenario: Any, ready_s: float, redis_url: str
) -> None:
    """URLs, the fleet, and copy-paste ``curl`` and ``tritonclient`` calls."""
    host = f"127.0.0.1:{settings.port}"
    model = _sample_model(workers)
    slo = settings.model_defaults(model).slo_ms
    c = _console
    c.print(
        f"\n[bold]SynergAI Gateway demo[/] — scenario {scenario.name}, serving in {ready_s:.1f} s"
    )
    c.print(f"  REST (KServe v2)   http://{host}/v2")
    c.print(f"  live view          http://{host}/synergai/v1/workers")
    c.print(f"  operator page      http://{host}/synergai/ui")
    c.print(f"  metrics            http://{host}/metrics")
    c.print(f"  Valkey             {redis_url}")
    t = Table(title="fleet (real Triton servers, emulated architectures)")
    for col in ("worker", "pool", "arch", "models", "rtt ms", "url"):
        t.add_column(col)
    for w in workers:
        t.add_row(w.id, w.pool, w.arch, ", ".join(w.models), f"{w.rtt_ms:g}", w.http_url)
    c.print(t)
    body = '{"inputs":[{"name":"INPUT0","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
    c.print("[bold]try it[/] (curl):", soft_wrap=True)
    c.print(
        f"  curl -s -i http://{host}/v2/models/{model}/infer -H 'x-slo-ms: {slo:g}' -d '{body}'",
        soft_wrap=True,
        markup=False,
    )
    c.print("[bold]or[/] (Python, tritonclient):")
    c.print(
        "  import numpy as np, tritonclient.http as httpclient\n"
        f'  c = httpclient.InferenceServerClient("{host}")\n'
        "  x = np.arange(4, dtype=np.float32).reshape(1, 4)\n"
        '  i = httpclient.InferInput("INPUT0", x.shape, "FP32"); i.set_data_from_numpy(x)\n'
        f'  r = c.infer("{model}", [i], headers={{"x-slo-ms": "{slo:g}"}})\n'
        '  print(r.as_numpy("OUTPUT0"))   # [[0. 2. 4. 6.]]\n',
        markup=False,
    )
    if settings.grpc_port:
        c.print(
            grpc_sample(f"127.0.0.1:{settings.grpc_port}", model, slo), markup=False, soft_wrap=True
        )


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def print_policy(
    name: str, trace: Sequence[Any], outcomes: Sequence[Any], summary: dict[str, Any]
) -> None:
    """One policy's result and its per-worker split (client-measured latency)."""
    by_worker: dict[str, list[float]] = defaultdict(list)
    late: dict[str, int] = defaultdict(int)
    for a, o in zip(trace, outcomes, strict=True):
        if o.status == "ok" and o.worker:
            by_worker[o.worker].append(o.latency_ms)
            late[o.worker] += o.latency_ms > a.slo_ms
    t = Table(title=f"{name}: per worker")
    for col in ("worker", "requests", "late", "p50 ms", "p99 ms"):
        t.add_column(col, justify="right" if col != "worker" else "left")
    for w in sorted(by_worker):
        lat = np.asarray(by_worker[w])
        t.add_row(
            w,
            str(len(lat)),
            str(late[w]),
            f"{np.percentile(lat, 50):.1f}",
            f"{np.percentile(lat, 99):.1f}",
        )
    _console.print(t)
    s = summary
    _console.print(
        f"  {name}: {s['requests']} requests, {s['ok']} ok, {s['slo_violations']} SLO "
        f"violations ({100 * s['violation_rate']:.1f}%), {s['errors']} errors, "
        f"p50 {_ms(s['p50_ms'])} ms, p99 {_ms(s['p99_ms'])} ms\n"
    )


def print_summary(results: dict[str, dict[str, Any]]) -> None:
    """The policies side by side."""
    t = Table(title="policies compared (same seeded trace, measured at the client)")
    cols = ("policy", "requests", "ok", "violations", "rate", "shed", "errors", "p50 ms", "p99 ms")
    for col in cols:
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, s in results.items():
        t.add_row(
            name,
            str(s["requests"]),
            str(s["ok"]),
            str(s["slo_violations"]),
            f"{100 * s['violation_rate']:.1f}%",
            str(s["shed"]),
            str(s["errors"]),
            _ms(s["p50_ms"]),
            _ms(s["p99_ms"]),
        )
    _console.print(t)
