"""The walking skeleton end to end: tritonclient -> real gateway (uvicorn) -> real Triton.

Real Valkey (embedded), a real fleet of two Triton servers of two emulated architectures
(W's ``triton_fleet`` fixture), the real app on uvicorn on a loopback port. Module-scoped so
the ~3 s of start-up is paid once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import psutil
import pytest
import redis
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.embedded import EmbeddedValkey
from gateway.server import ServerThread
from gateway.settings import ModelDefaults, Settings, WorkerSpec
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MS = 4.0


@pytest.fixture(scope="module")
def stack(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("gw-e2e")
    scenario = write_scenario(
        directory,
        pools=[
            {"name": "edge", "arch": "toy-edge", "workers": 1, "instances": 2, "rtt_ms": 0,
             "models": ["m1"]},
            {"name": "cloud", "arch": "toy-cloud", "workers": 1, "instances": 2, "rtt_ms": 0,
             "models": ["m1", "m2"]},
        ],
        profiles={
            ("toy-edge", "m1"): {1: (MS, MS), 8: (MS, MS)},
            ("toy-cloud", "m1"): {1: (MS, MS), 8: (MS, MS)},
            ("toy-cloud", "m2"): {1: (MS, MS), 8: (MS, MS)},
        },
    )  # fmt: skip
    workers = triton_fleet(scenario)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    valkey = EmbeddedValkey()
    url = valkey.start()
    settings = Settings(
        workers=[WorkerSpec(**w.as_config()) for w in workers],
        models={"m2": ModelDefaults(slo_ms=80, priority=2)},
        profiles=directory / "profiles",
        policy="round_robin",
        host="127.0.0.1",
        port=0,
        grpc_port=None,
        redis_url=url,
        redis_timeout_s=0.5,  # a loaded 2-core CI box; production keeps 50 ms
        log_level="warning",
    )
    app = create_app(settings)
    server = ServerThread(app)
    server.start()
    try:
        yield {"url": server.url, "host": f"127.0.0.1:{server.port}", "redis": url, "app": app}
    finally:
        server.stop()
        vpid = valkey.pid
        valkey.stop()
        assert not server._thread.is_alive(), "gateway thread still running"
        assert vpid is not None
        assert not psutil.pid_exists(vpid) or _zombie(vpid)
        left = {p.pid for p in psutil.Process().children(recursive=True)} - before
        assert not left, f"children left behind: {left}"


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _body(model_input: list[float], **params: object) -> bytes:
    doc: dict[str, Any] = {
        "inputs": [{"name": "INPUT0", "shape": [1, len(model_input)], "datatype": "FP32",
                    "data": model_input}]
    }  # fmt: skip
    if params:
        doc["parameters"] = params
    return orjson.dumps(doc)


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_results_are_right(stack: dict[str, Any], binary: bool) -> None:
    client = httpclient.InferenceServerClient(stack["host"])
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("m1") and client.is_model_ready("m2")
    meta = client.get_model_metadata("m1")
    assert meta["name"] == "m1" and meta["inputs"][0]["name"] == "INPUT0"
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 3
    i0 = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
    i0.set_data_from_numpy(x, binary_data=binary)
    y = np.arange(6, dtype=np.int64).reshape(3, 2) - 2
    i1 = httpclient.InferInput("INPUT1", list(y.shape), "INT64")
    i1.set_data_from_numpy(y, binary_data=binary)
    outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
    r = client.infer("m1", [i0, i1], outputs=outs, headers={"x-slo-ms": "500"})
    np.testing.assert_allclose(r.as_numpy("OUTPUT0"), x * 2)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), y * 2)
    client.close()


def test_round_robin_spreads_and_every_request_is_answered(stack: dict[str, Any]) -> None:
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=stack["url"]) as c:
        for k in range(20):
            r = c.post("/v2/models/m1/infer", content=_body([float(k)]))
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == [2.0 * k]
            assert r.headers["x-synergai-policy"] == "round_robin"
            seen[r.headers["x-synergai-worker"]] += 1
        for _ in range(4):
            r = c.post("/v2/models/m2/infer", content=_body([1.0]))
            assert r.headers["x-synergai-worker"] == "cloud-0"
            assert r.headers["x-synergai-pool"] == "cloud"
    assert seen == {"edge-0": 10, "cloud-0": 10}


def _outstanding(redis_url: str) -> dict[str, int]:
    r = redis.Redis.from_url(redis_url)
    out = {}
    for key in r.scan_iter("synergai:w:*"):
        out[key.decode()] = int(r.hget(key, "out") or 0)
    r.close()
    return out


def test_burst_then_redis_counts_return_to_zero(stack: dict[str, Any]) -> None:
    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=stack["url"], timeout=30) as c:
            rs = await asyncio.gather(
                *(c.post("/v2/models/m1/infer", content=_body([float(i)])) for i in range(64))
            )
        return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    assert codes == [200] * 64
    deadline = time.monotonic() + 5
    while any(_outstanding(stack["redis"]).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    counts = _outstanding(stack["redis"])
    assert set(counts) >= {"synergai:w:{edge-0}", "synergai:w:{cloud-0}"}
    assert all(v == 0 for v in counts.values()), counts


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v2/models/m1/infer", b'{"inputs": [', 400),
        ("/v2/models/m1/infer", b'{"inputs": []}', 400),
        ("/v2/models/nope/infer", _body([1.0]), 404),
    ],
)
def test_bad_requests_get_kserve_errors(
    stack: dict[str, Any], path: str, body: bytes, status: int
) -> None:
    r = httpx.post(stack["url"] + path, content=body)
    assert r.status_code == status
    assert set(r.json()) == {"error"}


def test_tritonclient_sees_errors(stack: dict[str, Any]) -> None:
    client = httpclient.InferenceServerClient(stack["host"])
    x = np.ones((1, 2), dtype=np.float32)
    i0 = httpclient.InferInput("INPUT0", [1, 2], "FP32")
    i0.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("nope", [i0])
    bad = httpclient.InferInput("NOT_AN_INPUT", [1, 2], "FP32")
    bad.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as info:  # Triton's own 400 passes through
        client.infer("m1", [bad])
    assert info.value.status() == "400"
    client.close()


def _violations(url: str, priority: str) -> float:
    text = httpx.get(url + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        ours = f'priority="{priority}"' in line and 'reason="late"' in line
        if line.startswith("synergai_slo_violations_total{") and ours:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_hints_from_headers_parameters_and_defaults(stack: dict[str, Any]) -> None:
    url = stack["url"]
    # header hints: an impossible 0.5 ms SLO at priority 7 is a late request of priority 7
    r = httpx.post(url + "/v2/models/m1/infer", content=_body([1.0]),
                   headers={"x-slo-ms": "0.5", "x-priority": "7"})  # fmt: skip
    assert r.status_code == 200
    assert _violations(url, "7") == 1
    # parameter hints, same effect at priority 5
    r = httpx.post(
        url + "/v2/models/m1/infer", content=_body([1.0], **{"x-slo-ms": 0.5, "x-priority": 5})
    )
    assert r.status_code == 200 and _violations(url, "5") == 1
    # header beats parameter
    r = httpx.post(url + "/v2/models/m1/infer", content=_body([1.0], **{"x-priority": 5}),
                   headers={"x-priority": "6", "x-slo-ms": "0.5"})  # fmt: skip
    assert _violations(url, "6") == 1 and _violations(url, "5") == 1
    # invalid hint values are refused before any worker sees them
    r = httpx.post(url + "/v2/models/m1/infer", content=_body([1.0]), headers={"x-slo-ms": "-5"})
    assert r.status_code == 400 and "x-slo-ms" in r.json()["error"]
    # model defaults from config: m2 has priority 2 (and a generous SLO: no violation)
    r = httpx.post(url + "/v2/models/m2/infer", content=_body([1.0]))
    assert r.status_code == 200 and _violations(url, "2") == 0


def test_ops_endpoints(stack: dict[str, Any]) -> None:
    doc = httpx.get(stack["url"] + "/synergai/v1/workers").json()
    assert doc["policy"] == "round_robin" and doc["stale"] is False
    assert {w["id"] for w in doc["workers"]} == {"edge-0", "cloud-0"}
    assert all(w["healthy"] for w in doc["workers"])
    text = httpx.get(stack["url"] + "/metrics").text
    assert (
        'synergai_requests_total{code="200",model="m1",policy="round_robin",pool="edge",worker="edge-0"}'
        in text
    )
