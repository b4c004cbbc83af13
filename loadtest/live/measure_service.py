"""Back-to-back service time of emulated Triton servers against the profile they emulate.

``python loadtest/live/measure_service.py``: one server with fixed 5 ms and 30 ms models and
one slot, one with two slots; prints the first requests after start, the serial p50, and how
long 20 requests sent at once take (ideal: 20 x ms / slots). ``GAP=0`` turns slot anchoring off
(``ServerSpec.queue_gap_ms``); ``SYNERGAI_EMULATION_TRACE=<dir>`` also logs every execution.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from workers.launcher import start_servers, stop_servers
from workers.repository import EmulatedModel, ServerSpec

BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]}
).encode()


def _conn(port: int) -> http.client.HTTPConnection:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.connect()
    return c


def _call(c: http.client.HTTPConnection, model: str) -> tuple[float, float]:
    t = time.time()
    c.request("POST", f"/v2/models/{model}/infer", body=BODY)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}")
    return t, time.time()


def _burst(port: int, model: str, n: int) -> list[float]:
    conns = [_conn(port) for _ in range(n)]
    res: list[tuple[float, float]] = [(0.0, 0.0)] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        res[i] = _call(conns[i], model)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    t0 = min(r[0] for r in res)
    return sorted(r[1] - t0 for r in res)


def main() -> None:
    """Run the measurement and print one line per figure."""
    gap = float(os.environ.get("GAP", "3.0"))
    models = [EmulatedModel.fixed("m5", 5.0), EmulatedModel.fixed("m30", 30.0)]
    specs = [
        ServerSpec("s1", models, instances=1, queue_gap_ms=gap),
        ServerSpec("s2", models, instances=2, queue_gap_ms=gap),
    ]
    servers = start_servers(specs, Path(tempfile.mkdtemp(prefix="measure-")))
    try:
        s1, s2 = servers
        c = _conn(s1.ports.http)
        first = [round((lambda r: (r[1] - r[0]) * 1000)(_call(c, "m5")), 2) for _ in range(5)]
        print("first 5 m5 on s1 after start:", first)
        for model, ms, n in (("m5", 5.0, 40), ("m30", 30.0, 15)):
            lat = [(lambda r: (r[1] - r[0]) * 1000)(_call(c, model)) for _ in range(n)]
            print(f"serial {model}: p50 {statistics.median(lat):.2f} ms (sleep {ms})")
        for srv, inst in ((s1, 1), (s2, 2)):
            for model, ms in (("m5", 5.0), ("m30", 30.0)):
                for _ in range(2):
                    ends = _burst(srv.ports.http, model, 20)
                    print(
                        f"slots={inst} {model} x20: last {ends[-1] * 1000:.1f} ms, ideal "
                        f"{20 * ms / inst:.0f}; per request "
                        f"{(ends[-1] - ends[0]) * 1000 / 19 * inst:.2f} ms (sleep {ms})"
                    )
    finally:
        stop_servers(servers)


if __name__ == "__main__":
    main()
