"""Added latency of the gateway over calling Triton directly (issue 4's target), one run.

What it starts: one real Triton server with a ~0 ms emulated model, an embedded Valkey, and
the gateway as a separate process (``python -m gateway.cli serve``) once per REST upstream
(``aiohttp``, ``httpx``). What it measures: closed-loop KServe v2 JSON infer calls
(``INPUT0`` FP32 [1, 4]) from ``c`` concurrent aiohttp clients, first straight to Triton, then
through each gateway, in the same run; added latency = gateway percentile - direct percentile.

Run::

    .venv/bin/python -m loadtest/latency_overhead.py            # table
    .venv/bin/python loadtest/latency_overhead.py --json --seconds 5

Target (issue 4): added p50 <= 1 ms at concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
import yaml

BODY = b'{"inputs":[{"name":"INPUT0","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'


async def _measure(url: str, concurrency: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    lat: list[float] = []
    errors = 0
    warm = 0
    # No Accept-Encoding: like tritonclient, and Triton's gzip answers do not decode cleanly.
    async with aiohttp.ClientSession(
        connector=connector, skip_auto_headers=("Accept-Encoding",)
    ) as session:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors, warm
            while True:
                t0 = time.perf_counter()
                if t0 >= until:
                    return
                async with session.post(url, data=BODY) as resp:
                    await resp.read()
                    ok = resp.status == 200
                t1 = time.perf_counter()
                if not record:
                    warm += 1
                else:
                    if ok:
                        lat.append((t1 - t0) * 1000.0)
                    else:
                        errors += 1

        now = time.perf_counter()
        await asyncio.gather(*(worker(now + warmup_s, False) for _ in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    arr = np.asarray(lat)
    return {
        "requests": len(lat),
        "warm_requests": warm,
        "errors": errors,
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
    }


def _wait_ready(port: int, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway on port {port} not ready")


def _start_gateway(config: Path, redis_url: str, upstream: str, log: Path) -> tuple[Any, int]:
    from gateway.core.net import free_port

    port = free_port()
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        SYNERGAI_UPSTREAM=upstream,
        SYNERGAI_POLICY="least_outstanding",
        SYNERGAI_LOG_LEVEL="warning",
        SYNERGAI_HOST="127.0.0.1",
    )
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    cmd += ["--port", str(port), "--grpc-port", str(free_port())]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        _wait_ready(port)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, port


def run(seconds: float, concurrencies: list[int], upstreams: list[str]) -> dict[str, Any]:
    """Start everything, measure, stop everything; the result document."""
    from gateway.embedded import EmbeddedValkey
    from workers.launcher import start_servers, stop_servers
    from workers.repository import EmulatedModel, ServerSpec

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="synergai-overhead-") as tmp, EmbeddedValkey() as vk:
        work = Path(tmp)
        spec = ServerSpec(name="direct-0", models=[EmulatedModel.fixed("zero", 0.001)])
        servers = start_servers([spec], work)
        try:
            triton = servers[0]
            config = work / "gateway.yaml"
            worker: dict[str, Any] = {"id": "direct-0", "pool": "p", "arch": "nvidia-a100"}
            worker |= {"url": triton.http_url, "models": ["zero"]}
            profiles = work / "profiles" / "nvidia-a100"
            profiles.mkdir(parents=True)
            (profiles / "zero.yaml").write_text(
                yaml.safe_dump(
                    {
                        "arch": "nvidia-a100",
                        "model": "zero",
                        "max_batch": 8,
                        "latency_ms": {1: {"p50": 0.1, "p99": 0.2}},
                    }
                )
            )
            config.write_text(
                yaml.safe_dump({"workers": [worker], "profiles": str(work / "profiles")})
            )
            gateways = {}
            try:
                for up in upstreams:
                    gateways[up] = _start_gateway(config, vk.url, up, work / f"gw-{up}.log")
                for c in concurrencies:
                    targets = [("direct", triton.http_url)] + [
                        (f"gateway-{up}", f"http://127.0.0.1:{port}")
                        for up, (_, port) in gateways.items()
                    ]
                    for name, base in targets:
                        url = f"{base}/v2/models/zero/infer"
                        up = name.removeprefix("gateway-")
                        proc = psutil.Process(gateways[up][0].pid) if up in gateways else None
                        cpu0 = sum(proc.cpu_times()[:2]) if proc else 0.0
                        res = asyncio.run(_measure(url, c, seconds, min(1.0, seconds / 3)))
                        if proc is not None:
                            cpu = sum(proc.cpu_times()[:2]) - cpu0
                            n = res["requests"] + res["warm_requests"]
                            res["gateway_cpu_ms_per_request"] = round(1000.0 * cpu / max(n, 1), 3)
                        rows.append({"target": name, "protocol": "http", "concurrency": c, **res})
                        print(f"  {name:16s} c={c:<3d} {res}", file=sys.stderr, flush=True)
            finally:
                for proc, _ in gateways.values():
                    proc.terminate()
                    proc.wait(timeout=15)
        finally:
            stop_servers(servers)
    added = []
    for r in rows:
        if r["target"] == "direct":
            continue
        d = next(
            x for x in rows if x["target"] == "direct" and x["concurrency"] == r["concurrency"]
        )
        added.append(
            {
                "target": r["target"],
                "concurrency": r["concurrency"],
                "added_p50_ms": round(r["p50_ms"] - d["p50_ms"], 3),
                "added_p99_ms": round(r["p99_ms"] - d["p99_ms"], 3),
            }
        )
    return {"mode": "overhead", "cpus": os.cpu_count(), "rows": rows, "added": added}


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point")
    ap.add_argument("--concurrency", type=int, action="append", help="repeatable (1, 16)")
    ap.add_argument("--upstream", action="append", help="aiohttp and/or httpx (default both)")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = ap.parse_args()
    doc = run(args.seconds, args.concurrency or [1, 16], args.upstream or ["aiohttp", "httpx"])
    if args.json:
        print(json.dumps(doc, indent=1))
        return
    print(f"{'target':18s} {'c':>3s} {'rps':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for r in doc["rows"]:
        print(
            f"{r['target']:18s} {r['concurrency']:3d} {r['rps']:8.0f} "
            f"{r['p50_ms']:8.3f} {r['p99_ms']:8.3f}"
        )
    print(f"\n{'added over direct':18s} {'c':>3s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for a in doc["added"]:
        print(
            f"{a['target']:18s} {a['concurrency']:3d} {a['added_p50_ms']:8.3f} "
            f"{a['added_p99_ms']:8.3f}"
        )


if __name__ == "__main__":
    main()
