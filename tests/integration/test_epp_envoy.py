"""tritonclient (HTTP and gRPC) -> real Envoy -> real Triton fleet, our endpoint picker choosing.

One module fleet, heterogeneous on purpose: pool ``fast`` (2 ms for ``m``) and pool ``edge``
(20 ms), one Triton server each; ``slow`` (300 ms) only on ``fast``. One ``synergai epp``
child (embedded Valkey) and one Envoy (fail-open) in front of them; every test runs once per
picker transport (``epp.transport``: ``h2``, ``grpcio``).
"""

from __future__ import annotations

import concurrent.futures
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.epp.process import check_health
from gateway.epp.stack import EnvoyStack
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

BODY = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[1]}]}'


@pytest.fixture(scope="module", params=["h2", "grpcio"])
def stack(
    request: pytest.FixtureRequest,
    triton_fleet: FleetFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EnvoyStack]:
    """The stack, once per ``epp.transport`` (our HTTP/2, and ``grpc.aio``)."""
    directory = tmp_path_factory.mktemp("epp")
    path = write_scenario(
        directory,
        pools=[
            {"name": "fast", "arch": "gpu-toy", "workers": 1, "instances": 2, "rtt_ms": 0,
             "models": ["m", "slow"]},
            {"name": "edge", "arch": "edge-toy", "workers": 1, "instances": 1, "rtt_ms": 0,
             "models": ["m"]},
        ],
        profiles={
            ("gpu-toy", "m"): {1: (2.0, 2.0), 8: (3.0, 3.0)},
            ("gpu-toy", "slow"): {1: (300.0, 300.0), 8: (300.0, 300.0)},
            ("edge-toy", "m"): {1: (20.0, 20.0), 8: (40.0, 40.0)},
        },
    )  # fmt: skip
    workers = triton_fleet(path, inject_faults=False)
    settings = {
        "models": {"m": {"slo_ms": 200}, "slow": {"slo_ms": 2000}},
        # nothing but the classification keeps a client's errors from ejecting a 1-worker pool
        "outlier_max_ejection_percent": 100.0,
        "epp": {"transport": request.param},
    }
    with EnvoyStack(
        [w.as_config() for w in workers], directory / "stack", directory / "profiles",
        settings=settings,
    ) as s:  # fmt: skip
        yield s


def _post(stack: EnvoyStack, model: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/v2/models/{model}/infer", content=BODY, headers=headers or {}, timeout=10
    )


def test_http_infer_through_envoy_carries_routing_headers(stack: EnvoyStack) -> None:
    client = httpclient.InferenceServerClient(stack.address)
    inp = httpclient.InferInput("INPUT0", [1, 1], "FP32")
    inp.set_data_from_numpy(np.ones((1, 1), np.float32))
    result = client.infer("m", [inp])
    assert result.as_numpy("OUTPUT0").tolist() == [[2.0]]
    resp = _post(stack, "m", {"x-slo-ms": "100"})
    assert resp.status_code == 200
    assert resp.headers["x-synergai-pool"] in {"fast", "edge"}
    assert resp.headers["x-synergai-worker"].startswith(resp.headers["x-synergai-pool"])
    assert resp.headers["x-synergai-policy"] == "synergai"
    assert float(resp.headers["x-synergai-predicted-ms"]) > 0


def test_grpc_infer_with_and_without_model_header(stack: EnvoyStack) -> None:
    client = grpcclient.InferenceServerClient(stack.address)
    inp = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    inp.set_data_from_numpy(np.full((1, 1), 3.0, np.float32))
    by_body = client.infer("m", [inp])  # model only in the body: the EPP buffers it
    by_header = client.infer("m", [inp], headers={"x-synergai-model": "m"})
    assert by_body.as_numpy("OUTPUT0").tolist() == [[6.0]]
    assert by_header.as_numpy("OUTPUT0").tolist() == [[6.0]]
    assert client.is_model_ready("slow")  # ModelReady names its model in the body too
    assert client.is_server_live()  # no model: Envoy's own balancing


def test_the_picker_prefers_the_fast_pool_when_idle(stack: EnvoyStack) -> None:
    pools = Counter(_post(stack, "m", {"x-slo-ms": "100"}).headers["x-synergai-pool"]
                    for _ in range(10))  # fmt: skip
    assert pools["fast"] >= 8, pools


def test_refusals_in_kserve_form(stack: EnvoyStack) -> None:
    shed = _post(stack, "m", {"x-slo-ms": "0.01"})
    assert shed.status_code == 429
    assert int(shed.headers["retry-after"]) >= 1
    assert "cannot be met" in shed.json()["error"]
    missing = _post(stack, "nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "unknown model 'nope'"}
    bad = _post(stack, "m", {"x-priority": "high"})
    assert bad.status_code == 400 and "x-priority" in bad.json()["error"]
    client = grpcclient.InferenceServerClient(stack.address)
    inp = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    inp.set_data_from_numpy(np.ones((1, 1), np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("m", [inp], headers={"x-slo-ms": "0.01"})
    assert "RESOURCE_EXHAUSTED" in str(err.value.status())


def test_gie_slo_header_and_client_picks_ignored(stack: EnvoyStack) -> None:
    assert _post(stack, "m", {"x-slo-ttft-ms": "0.01"}).status_code == 429
    # a client cannot choose the endpoint itself: the picker overwrites the header
    resp = _post(stack, "m", {"x-gateway-destination-endpoint": "127.0.0.1:1"})
    assert resp.status_code == 200


def test_health_and_metrics(stack: EnvoyStack) -> None:
    assert stack.epp is not None
    for service in ("liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"):
        assert check_health(stack.epp.address, service) == "SERVING"
    assert _post(stack, "m").status_code == 200
    text = stack.envoy.stats("cluster.triton_http.upstream_rq_2xx")
    assert text.get("cluster.triton_http.upstream_rq_2xx", 0) >= 1


def test_concurrent_load_is_released(stack: EnvoyStack) -> None:
    """A burst of slow requests books and releases the fast worker's leases (no leak)."""

    def one(_: int) -> int:
        return _post(stack, "slow").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(8)))
    assert codes.count(200) >= 6, codes  # the rest may be shed (2 instances, 300 ms each)
    assert set(codes) <= {200, 429}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the picker sees the worker idle again
        if _post(stack, "slow", {"x-slo-ms": "650"}).status_code == 200:
            break
        time.sleep(0.2)
    else:
        pytest.fail("leases were not released")


def test_admin_ready(stack: EnvoyStack) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.envoy.layout.admin_port}/ready") as r:
        assert r.status == 200


def test_stop_leaves_nothing(tmp_path: Path) -> None:
    worker = {"id": "w", "pool": "p", "arch": "a", "url": "http://127.0.0.1:1",
              "grpc_url": "127.0.0.1:2", "models": ["m"]}  # fmt: skip
    stack = EnvoyStack([worker], tmp_path, picker=False)
    stack.start()
    pids = stack.pids()
    stack.stop()
    from workers import reaper

    assert pids and all(reaper.is_gone(p) for p in pids)


UNPARSABLE = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":["a"]}]}'


def test_malformed_requests_never_take_a_worker_out(stack: EnvoyStack) -> None:
    """Issue 18.1 on the picker's path: Triton's REST 500 for unparsable data and gRPC
    INVALID_ARGUMENT are the client's; no worker is ejected after a dozen of each (before: every
    worker of the model was, 'no healthy worker')."""
    for _ in range(12):
        r = httpx.post(f"{stack.url}/v2/models/m/infer", content=UNPARSABLE, timeout=10)
        assert r.status_code == 400 and "Unable to parse" in r.json()["error"], r.text
    client = grpcclient.InferenceServerClient(stack.address)
    wrong = grpcclient.InferInput("NOPE", [1, 1], "FP32")
    wrong.set_data_from_numpy(np.ones((1, 1), np.float32))
    for _ in range(12):
        with pytest.raises(InferenceServerException) as err:
            client.infer("m", [wrong], headers={"x-synergai-model": "m"})
        assert "INVALID_ARGUMENT" in str(err.value.status())
    # no worker taken out: the picker's health view (which pool a fit goes to is the policy's
    # business: it may protect the tighter SLO classes earlier tests taught it)
    text = stack.metrics()
    health = [line for line in text.splitlines() if line.startswith("synergai_worker_healthy{")]
    assert len(health) == 2 and all(line.endswith(" 1.0") for line in health), health
    ejected = [line for line in text.splitlines()
               if line.startswith("synergai_outlier_ejections_total{")
               and not line.endswith(" 0.0")]  # fmt: skip
    assert not ejected, ejected
    assert all(_post(stack, "m", {"x-slo-ms": "100"}).status_code == 200 for _ in range(5))
