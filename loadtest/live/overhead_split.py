"""Where the live path's fixed cost per request goes (issue 15.7; the scenario key overhead_ms).

``python loadtest/live/overhead_split.py [N] [--json]``: the calibration scenario
(``loadtest/live/calibrate/overhead.yaml`` with its rtt set to 0 here, so no delay relay: one
emulated Triton server, one slot, a model that always takes 5 ms) on a real stack, ``N``
requests (default 200) sent one at a time every 50 ms (so none waits) over keep-alive HTTP
(``http.client``), first straight to Triton, then through one ``synergai serve``
(``round_robin``). Per request the emulated model logs its execution
(``SYNERGAI_EMULATION_TRACE``), and the gateway's ``synergai_request_duration_seconds`` gives
what the gateway itself measures. Printed (ms, mean and p50 where both exist):

* ``service``: the emulated service (5 ms);
* ``in_execute``: Triton's ``execute`` beyond the service (sleep overshoot, the slot file);
* ``triton_path``: direct client latency minus the execution (HTTP front end, ensemble,
  python-backend IPC, this client);
* ``gateway``: through the gateway minus direct (parse, decision, proxying, both hops);
* ``outside_gateway``: client latency through the gateway minus what the gateway measured
  (what the gateway's own view of a request's latency leaves out).

The machine's load average is printed with it: on a shared 2-core machine every figure grows
with it.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.scenario import load_scenario
from loadtest.bench_calibrate import duration_seconds
from loadtest.bench_stack import LiveStack
from loadtest.bench_workload import keep_private

SCENARIO = Path(__file__).resolve().parent / "calibrate" / "overhead.yaml"
MODEL, SERVICE_MS, GAP_S = "fixed5", 5.0, 0.05
BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]}
).encode()


def _paced(url: str, n: int) -> list[float]:
    """Client latency (ms) of ``n`` requests sent one at a time every ``GAP_S``."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port.rstrip("/")), timeout=30)
    out: list[float] = []
    headers = {"Content-Type": "application/json", "x-slo-ms": "1000"}
    nxt = time.monotonic()
    for _ in range(n + 10):  # the first 10 warm up
        nxt += GAP_S
        t = time.perf_counter()
        c.request("POST", f"/v2/models/{MODEL}/infer", body=BODY, headers=headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status} from {url}")
        out.append((time.perf_counter() - t) * 1000.0)
        time.sleep(max(0.0, nxt - time.monotonic()))
    c.close()
    return out[10:]


def _executions(trace_dir: Path) -> list[float]:
    """Per execution, Triton's ``execute`` time (ms), in order."""
    rows = [
        json.loads(line)
        for f in sorted(trace_dir.glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    rows.sort(key=lambda r: r["t0"])
    return [(r["end"] - r["t0"]) * 1000.0 for r in rows]


def _stats(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=100)
    return {"mean": statistics.fmean(xs), "p50": statistics.median(xs), "p99": q[98]}


def measure(n: int) -> dict[str, Any]:
    """Run both legs on a fresh stack; the breakdown (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="overhead-split-"))
    trace = work / "trace"
    trace.mkdir()
    os.environ["SYNERGAI_EMULATION_TRACE"] = str(trace)
    load0 = os.getloadavg()[0]
    sc = load_scenario(SCENARIO)
    sc = keep_private(
        sc, sc.model_copy(update={"pools": [sc.pools[0].model_copy(update={"rtt_ms": 0.0})]})
    )
    with LiveStack(sc, work, progress=False) as stack:
        url = stack.fleet.workers[0].direct_http_url
        direct = _paced(url, n)
        ex_direct = _executions(trace)[-n:]
        gw = stack.start_gateways("round_robin")[0]
        s0, c0 = duration_seconds(gw.metrics())
        via = _paced(gw.url, n)
        s1, c1 = duration_seconds(gw.metrics())
        ex_via = _executions(trace)[-n:]
    gw_mean = (s1 - s0) / (c1 - c0) * 1000.0 if c1 > c0 else float("nan")
    d, v = _stats(direct), _stats(via)
    e_d, e_v = statistics.fmean(ex_direct), statistics.fmean(ex_via)
    return {
        "requests": n,
        "service_ms": SERVICE_MS,
        "direct_ms": d,
        "via_gateway_ms": v,
        "gateway_measured_mean_ms": gw_mean,
        "execute_mean_ms": {"direct": e_d, "via_gateway": e_v},
        "split_mean_ms": {
            "in_execute": e_v - SERVICE_MS,
            "triton_path": d["mean"] - e_d,
            "gateway": v["mean"] - d["mean"],
            "outside_gateway": v["mean"] - gw_mean,
        },
        "overhead_via_gateway_ms": {"p50": v["p50"] - SERVICE_MS, "p99": v["p99"] - SERVICE_MS},
        "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str]) -> int:
    """Measure and print (``--json``: one JSON document)."""
    n = next((int(a) for a in argv if a.isdigit()), 200)
    out = measure(n)
    if "--json" in argv:
        print(json.dumps(out, indent=2))
        return 0
    for k, v in out.items():
        print(f"{k:26s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
