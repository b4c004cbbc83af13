"""SIGTERM mid-load: ``synergai serve`` stops accepting, finishes what it accepted, exits 0.

A real ``synergai serve`` process (its own uvicorn) in front of two real Triton servers whose
model takes 20 ms, sharing an external real Valkey; 16 concurrent clients keep sending until
well after the signal. What must hold:

* the process exits 0 within its drain timeout;
* every request that got an HTTP answer got a 200; the others failed at the connection (the
  gateway had stopped accepting) without an answer;
* no accepted request is lost: the gateway's own count of answered requests, logged on its
  way out, equals the 200s the clients received, and it abandoned none in flight;
* every Redis reservation is released (each worker's outstanding count is back to 0).
"""

from __future__ import annotations

import ast
import asyncio
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis
import yaml

from gateway.embedded import EmbeddedValkey
from loadtest.gateway_process import GatewayProcess
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MS = 20.0
BODY = orjson.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
)


async def _client(session: aiohttp.ClientSession, url: str, stop: float, out: Counter[str]) -> None:
    while time.monotonic() < stop:
        try:
            async with session.post(f"{url}/v2/models/m1/infer", data=BODY) as r:
                await r.read()
                out[str(r.status)] += 1
        except aiohttp.ClientConnectorError:
            out["refused"] += 1  # not accepted: the gateway closed its listening socket
            await asyncio.sleep(0.01)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            # an idle keep-alive connection closed (or reset) under a request being written:
            # not accepted either, which the gateway's own count below confirms
            out["closed before an answer"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            out[f"other:{type(exc).__name__}"] += 1


def test_sigterm_mid_load_loses_no_accepted_request(
    triton_fleet: FleetFactory, tmp_path: Path
) -> None:
    scenario = write_scenario(
        tmp_path,
        pools=[{"name": "p", "arch": "toy", "workers": 2, "instances": 2, "rtt_ms": 0,
                "models": ["m1"]}],
        profiles={("toy", "m1"): {1: (MS, MS)}},
    )  # fmt: skip
    workers = triton_fleet(scenario)
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "policy": "least_outstanding",
                "profiles": str(tmp_path / "profiles"),
                "models": {"m1": {"slo_ms": 2000}},
                "redis_timeout_s": 0.5,
                "drain_timeout_s": 10,
                "workers": [w.as_config() for w in workers],
            }
        )
    )
    valkey = EmbeddedValkey()
    redis_url = valkey.start()
    gw = GatewayProcess(cfg, tmp_path, redis_url=redis_url, env={"SYNERGAI_LOG_LEVEL": "info"})
    url = gw.url
    try:
        gw.start()
        gw.wait_ready()
        out: Counter[str] = Counter()

        async def load() -> None:
            t0 = time.monotonic()
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(
                connector=conn, timeout=aiohttp.ClientTimeout(total=15)
            ) as session:
                clients = [
                    asyncio.create_task(_client(session, url, t0 + 3.0, out)) for _ in range(16)
                ]
                await asyncio.sleep(1.5)
                gw.terminate()
                await asyncio.gather(*clients)

        asyncio.run(load())
        code = gw.wait(timeout=20)
        log = gw.log()
        m = re.search(r"shutdown: requests answered by code (\{.*?\}); (\d+) abandoned", log)
        said = m.group(0) if m else log[-2000:]
        print(f"\nshutdown: client outcomes {dict(out)}; gateway: {said}")
        assert code == 0, log[-3000:]
        assert m is not None, log[-3000:]
        answered: dict[str, Any] = ast.literal_eval(m.group(1))  # our own log line
        answered_codes = {k for k, v in answered.items() if v}
        assert int(m.group(2)) == 0, "requests abandoned in flight"
        assert answered_codes <= {"200"}, answered
        got = {k for k in out if k[0].isdigit()}
        assert got == {"200"}, out
        assert out["200"] == answered.get("200", 0), (dict(out), answered)
        assert out["200"] > 100 and not [k for k in out if k.startswith("other:")], out
        r = redis.Redis.from_url(redis_url)
        outstanding = {k.decode(): int(r.hget(k, "out") or 0) for k in r.scan_iter("synergai:w:*")}
        r.close()
        assert outstanding and not any(outstanding.values()), outstanding
    finally:
        gw.kill()
        valkey.stop()
