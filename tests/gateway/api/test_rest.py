"""The REST front door on the real app, with a fake upstream and the in-memory store."""

from __future__ import annotations

import math
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway.app import AppDeps, create_app
from gateway.core.clock import MonotonicClock
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.prediction.profiles import ProfileBook
from gateway.routing.types import Decision
from gateway.settings import Settings
from gateway.state.memory_store import MemoryStore
from gateway.testing import FakeUpstream, FixedPolicy
from gateway.upstream.base import UpstreamResponse

BODY = orjson.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}]}
)


def _client(settings: Settings, book: ProfileBook, **deps: object) -> Iterator[TestClient]:
    clock = MonotonicClock()
    d = AppDeps(clock=clock, store=MemoryStore(clock), profiles=book, collectors=False, **deps)  # type: ignore[arg-type]
    with TestClient(create_app(settings, d), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def client(settings: Settings, book: ProfileBook, upstream: FakeUpstream) -> Iterator[TestClient]:
    yield from _client(settings, book, upstreams={"http": upstream})


def test_health_and_server_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2").json()
    assert meta["name"] == "synergai-gateway" and "binary_tensor_data" in meta["extensions"]


def test_json_infer_forwarded_unchanged(client: TestClient, upstream: FakeUpstream) -> None:
    r = client.post(
        "/v2/models/m1/infer",
        content=BODY,
        headers={"content-type": "application/json", "x-slo-ms": "30", "x-trace": "no"},
    )
    assert r.status_code == 200 and r.content == BODY
    sent = upstream.sent[0]
    assert sent.body == BODY and sent.target == "/v2/models/m1/infer"
    assert sent.headers == {"content-type": "application/json"}  # hints stay at the gateway
    assert r.headers["x-synergai-worker"] == sent.worker
    assert r.headers["x-synergai-policy"] == "round_robin"
    assert r.headers["x-synergai-pool"] in {"fast", "slow"}
    assert (
        float(r.headers["x-synergai-predicted-ms"]) > 0
        or r.headers["x-synergai-predicted-ms"] == "nan"
    )


def test_binary_infer_and_response_pass_through(settings: Settings, book: ProfileBook) -> None:
    header = orjson.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 8}}]})  # fmt: skip
    tensor = b"\x00\x00\x80?\x00\x00\x00@"
    answer = b'{"outputs":[]}' + b"\x01\x02\x03\x04"
    up = FakeUpstream(
        respond=lambda w, t, b: UpstreamResponse.from_http(
            200,
            answer,
            {"content-type": "application/octet-stream", "inference-header-content-length": "14"},
        )
    )
    for client in _client(settings, book, upstreams={"http": up}):
        r = client.post(
            "/v2/models/m1/versions/1/infer",
            content=header + tensor,
            headers={
                "inference-header-content-length": str(len(header)),
                "content-type": "application/octet-stream",
            },
        )
        assert r.status_code == 200 and r.content == answer
        assert r.headers["inference-header-content-length"] == "14"
        assert r.headers["content-type"] == "application/octet-stream"
        sent = up.sent[0]
        assert sent.body == header + tensor and sent.target == "/v2/models/m1/versions/1/infer"
        assert sent.headers["inference-header-content-length"] == str(len(header))


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/v2/models/m1/infer", b"{not json", {}, 400),
        ("/v2/models/m1/infer", b"{}", {}, 400),
        ("/v2/models/m1/infer", BODY, {"x-slo-ms": "-5"}, 400),
        ("/v2/models/m1/infer", BODY, {"x-priority": "high"}, 400),
        ("/v2/models/m1/infer", BODY, {"inference-header-content-length": "99999"}, 400),
        ("/v2/models/nope/infer", BODY, {}, 404),
        ("/v2/models/nope/infer", b"garbage", {}, 404),
        ("/v2/nowhere", b"", {}, 404),
    ],
)
def test_errors_are_kserve_json(
    client: TestClient, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == status
    assert isinstance(r.json()["error"], str) and "Traceback" not in r.text


def test_body_limit(settings: Settings, book: ProfileBook) -> None:
    small = settings.model_copy(update={"max_body_bytes": 100})
    for client in _client(small, book, upstreams={"http": FakeUpstream()}):
        r = client.post("/v2/models/m1/infer", content=b"x" * 200)
        assert r.status_code == 413 and "limit" in r.json()["error"]


def test_method_not_allowed_is_json(client: TestClient) -> None:
    r = client.get("/v2/models/m1/infer")
    assert r.status_code == 405 and "error" in r.json()


@pytest.mark.parametrize(
    ("decision", "status", "retry"),
    [
        (Decision(None, 1500.0, math.nan, "shed_slo"), 429, "2"),
        (Decision(None, math.nan, math.nan, "no_worker"), 503, "1"),
    ],
)
def test_refusals(
    settings: Settings, book: ProfileBook, decision: Decision, status: int, retry: str
) -> None:
    for client in _client(
        settings, book, upstreams={"http": FakeUpstream()}, policy=FixedPolicy(decision)
    ):
        r = client.post("/v2/models/m1/infer", content=BODY)
        assert r.status_code == status and r.headers["retry-after"] == retry
        assert "error" in r.json()


@pytest.mark.parametrize(
    ("err", "status"), [(UpstreamTimeout("slow"), 504), (UpstreamError("down"), 502)]
)
def test_upstream_failures(
    settings: Settings, book: ProfileBook, err: Exception, status: int
) -> None:
    up = FakeUpstream(fail={"f0": err, "s0": err})  # type: ignore[dict-item]
    for client in _client(settings, book, upstreams={"http": up}):
        r = client.post("/v2/models/m1/infer", content=BODY)
        assert r.status_code == status and r.json()["error"]


def test_triton_error_passes_through_with_its_status(settings: Settings, book: ProfileBook) -> None:
    err = b'{"error":"unexpected shape for input \'INPUT0\'"}'
    up = FakeUpstream(
        respond=lambda w, t, b: UpstreamResponse.from_http(
            400, err, {"content-type": "application/json"}
        )
    )
    for client in _client(settings, book, upstreams={"http": up}):
        r = client.post("/v2/models/m1/infer", content=BODY)
        assert r.status_code == 400 and r.content == err
        assert "x-synergai-worker" in r.headers


def test_metadata_and_ready_forwarded_to_a_serving_worker(
    client: TestClient, upstream: FakeUpstream
) -> None:
    upstream.respond = lambda w, t, b: UpstreamResponse.from_http(
        200, b'{"name":"m2"}', {"content-type": "application/json"}
    )
    assert client.get("/v2/models/m2").json() == {"name": "m2"}
    assert client.get("/v2/models/m2/ready").status_code == 200
    assert client.get("/v2/models/m2/versions/1/ready").status_code == 200
    assert client.get("/v2/models/m2/config").status_code == 200
    assert {s.worker for s in upstream.sent} == {"s0"}  # only s0 serves m2
    targets = ["", "/ready", "/versions/1/ready", "/config"]
    assert [s.target for s in upstream.sent] == [f"/v2/models/m2{t}" for t in targets]
    assert all(s.body is None for s in upstream.sent)
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_metrics_and_workers_view(client: TestClient) -> None:
    client.post("/v2/models/m1/infer", content=BODY)
    text = client.get("/metrics").text
    for name in (
        "synergai_requests_total", "synergai_request_duration_seconds_bucket",
        "synergai_routing_decision_seconds_bucket", "synergai_state_staleness_seconds",
    ):  # fmt: skip
        assert name in text
    doc = client.get("/synergai/v1/workers").json()
    assert doc["policy"] == "round_robin" and doc["stale"] is False
    assert {w["id"] for w in doc["workers"]} == {"f0", "s0"}


def test_workers_view_and_metrics_report_the_self_check(
    settings: Settings, book: ProfileBook
) -> None:
    syn = settings.model_copy(update={"policy": "synergai"})
    for client in _client(syn, book, upstreams={"http": FakeUpstream()}):
        assert client.post("/v2/models/m1/infer", content=BODY).status_code == 200
        doc = client.get("/synergai/v1/workers").json()
        assert doc["self_check"]["all"]["deviations"] == "on"
        assert doc["self_check"]["all"]["requests"] == 1.0 and doc["self_check"]["classes"] == {}
        text = client.get("/metrics").text
        assert 'synergai_selfcheck_deviations{model="*"} 1.0' in text
        assert 'synergai_selfcheck_trips_total{model="*"} 0.0' in text
    for client in _client(settings, book, upstreams={"http": FakeUpstream()}):  # round_robin
        assert client.get("/synergai/v1/workers").json()["self_check"] is None
        assert "synergai_selfcheck" not in client.get("/metrics").text


def test_drain_needs_the_admin_token(settings: Settings, book: ProfileBook) -> None:
    for client in _client(settings, book, upstreams={"http": FakeUpstream()}):
        assert client.post("/synergai/v1/workers/f0/drain").status_code == 403  # no token set
    with_token = settings.model_copy(update={"admin_token": "t0k"})
    from pydantic import SecretStr

    with_token = settings.model_copy(update={"admin_token": SecretStr("t0k")})
    up = FakeUpstream()
    for client in _client(with_token, book, upstreams={"http": up}):
        assert client.post("/synergai/v1/workers/f0/drain").status_code == 401
        bad = {"authorization": "Bearer nope"}
        assert client.post("/synergai/v1/workers/f0/drain", headers=bad).status_code == 401
        ok = {"authorization": "Bearer t0k"}
        assert client.post("/synergai/v1/workers/f0/drain", headers=ok).json()["drained"] is True
        assert client.post("/synergai/v1/workers/zz/drain", headers=ok).status_code == 404
        for _ in range(4):
            client.post("/v2/models/m1/infer", content=BODY)
        assert {s.worker for s in up.sent} == {"s0"}
        client.post("/synergai/v1/workers/f0/undrain", headers=ok)


def test_lifespan_starts_and_closes_upstream(settings: Settings, book: ProfileBook) -> None:
    up = FakeUpstream()
    for _ in _client(settings, book, upstreams={"http": up}):
        assert up.started and not up.closed
    assert up.closed


def test_fastapi_routes_behave_like_the_fast_path(settings: Settings, book: ProfileBook) -> None:
    clock = MonotonicClock()
    up = FakeUpstream()
    d = AppDeps(clock=clock, store=MemoryStore(clock), profiles=book, collectors=False,
                upstreams={"http": up})  # fmt: skip
    app = create_app(settings, d)
    app.fast_path = None
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v2/models/m1/infer", content=BODY, headers={"x-slo-ms": "30"})
        assert r.status_code == 200 and r.content == BODY and "x-synergai-worker" in r.headers
        assert client.post("/v2/models/m1/infer", content=b"{bad").status_code == 400
        assert client.post("/v2/models/zz/versions/2/infer", content=BODY).status_code == 404
        assert len(up.sent) == 1
