"""Schema-driven fuzzing of the REST API (schemathesis) against the real stack.

The gateway's own OpenAPI schema (``app.openapi()``: KServe v2 routes with the infer body and
hint headers described, ops routes) drives schemathesis' generators, positive (valid per the
schema) and negative (violating it), every operation, half of the model-route cases aimed at
the real model so they reach a real Triton worker. What must hold for every case: no 5xx, a
4xx is a KServe error document (``{"error": "..."}``), and the gateway neither logs an
unhandled error nor dies (it still answers ``/v2/health/live`` afterwards).

``test_fuzz_rest_api`` (default suite) runs ~200 cases; ``test_fuzz_rest_api_1000`` (``slow``)
runs over 1,000. The table-driven ``test_bad_input`` pins the answer to each kind of bad input
named in issue 8.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode

from gateway.app import create_app
from gateway.embedded import EmbeddedValkey
from gateway.server import ServerThread
from gateway.settings import ModelDefaults, Settings, WorkerSpec
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MODEL = "m1"
TOKEN = "fuzz-admin-token-0123456789"


@pytest.fixture(scope="module")
def stack(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("fuzz")
    scenario = write_scenario(
        directory,
        pools=[{"name": "p", "arch": "toy", "workers": 1, "instances": 2, "rtt_ms": 0,
                "models": [MODEL]}],
        profiles={("toy", MODEL): {1: (2.0, 2.0), 8: (2.0, 2.0)}},
    )  # fmt: skip
    workers = triton_fleet(scenario)
    valkey = EmbeddedValkey()
    url = valkey.start()
    settings = Settings(
        workers=[WorkerSpec(**w.as_config()) for w in workers],
        models={MODEL: ModelDefaults(slo_ms=1000)},
        profiles=directory / "profiles",
        policy="least_outstanding",
        host="127.0.0.1",
        port=0,
        grpc_port=None,
        redis_url=url,
        redis_timeout_s=0.5,
        max_body_bytes=1024 * 1024,
        admin_token=SecretStr(TOKEN),
        log_level="warning",
    )
    app = create_app(settings)
    server = ServerThread(app)
    server.start()
    try:
        yield {"url": server.url, "schema": app.openapi()}
    finally:
        server.stop()
        valkey.stop()


def _check(resp: requests.Response, label: str) -> None:
    assert resp.status_code < 500, f"{label}: {resp.status_code} {resp.text[:300]}"
    if 400 <= resp.status_code < 500:
        doc = orjson.loads(resp.content)
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str), (label, resp.text)


def _strategies(schema: Any) -> list[Any]:
    """Every operation, positive and (where it has inputs to break) negative; model routes
    also aimed at the real model."""
    out = []
    for result in schema.get_all_operations():
        op = result.ok()
        variants: list[dict[str, Any]] = [{}]
        if "{model}" in op.path:
            variants.append({"path_parameters": {"model": MODEL}})
        negatable = bool(
            len(op.path_parameters) or len(op.headers) or len(op.query) or len(op.body)
        )
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable else [])
        out += [op.as_strategy(mode, **kw) for mode in modes for kw in variants]
    return out


def _fuzz(stack: dict[str, Any], cases: int) -> Counter[str]:
    """Send ``cases`` generated cases (every operation, both modes); count answers by class."""
    schema = schemathesis.openapi.from_dict(stack["schema"])
    session = requests.Session()
    seen: Counter[str] = Counter()

    @hypothesis.settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @given(case=st.one_of(_strategies(schema)))
    def run(case: Any) -> None:
        try:
            resp = case.call(base_url=stack["url"], session=session, timeout=15)
        except (requests.exceptions.InvalidHeader, ValueError, UnicodeError):
            seen["unsendable"] += 1  # the client library refused to send it
            return
        seen[f"{resp.status_code // 100}xx"] += 1
        seen["model route" if MODEL in str(resp.request.url) else "other route"] += 1
        _check(resp, case.operation.label)

    run()
    session.close()
    return seen


def _alive(stack: dict[str, Any]) -> None:
    assert requests.get(f"{stack['url']}/v2/health/live", timeout=5).status_code == 200


def test_fuzz_rest_api(stack: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        seen = _fuzz(stack, cases=200)
    sent = sum(v for k, v in seen.items() if k.endswith("xx"))
    print(f"\nfuzz: {sent} cases sent, {dict(seen)}")
    assert sent >= 200 and seen["5xx"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:2000]
    _alive(stack)


@pytest.mark.slow
def test_fuzz_rest_api_1000(stack: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        seen = _fuzz(stack, cases=1100)
    sent = sum(v for k, v in seen.items() if k.endswith("xx"))
    print(f"\nfuzz: {sent} cases sent, {dict(seen)}")
    assert sent >= 1000 and seen["5xx"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:2000]
    _alive(stack)


def _infer(stack: dict[str, Any], model: str = MODEL) -> str:
    return f"{stack['url']}/v2/models/{model}/infer"


_OK_INPUT: dict[str, Any] = {"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}


@pytest.mark.parametrize(
    ("what", "kwargs", "status"),
    [
        ("valid", {"json": {"inputs": [_OK_INPUT]}}, 200),
        ("too large", {"data": b"x" * (1024 * 1024 + 1)}, 413),
        ("wrong content type", {"data": b"a=1", "headers": {"Content-Type": "image/png"}}, 415),
        ("multipart", {"files": {"f": b"{}"}}, 415),
        ("malformed JSON",
         {"data": b'{"inputs": [', "headers": {"Content-Type": "application/json"}}, 400),
        ("not an object", {"json": [1, 2]}, 400),
        ("no inputs", {"json": {"inputs": []}}, 400),
        ("binary header length not a number",
         {"data": b"{}", "headers": {"Inference-Header-Content-Length": "abc"}}, 400),
        ("binary header length past the body",
         {"data": b"{}", "headers": {"Inference-Header-Content-Length": "999"}}, 400),
        ("binary header not JSON",
         {"data": b"xxxx\x00\x01", "headers": {"Inference-Header-Content-Length": "4"}}, 400),
        ("negative dim", {"json": {"inputs": [{**_OK_INPUT, "shape": [-1]}]}}, 400),
        ("unknown datatype", {"json": {"inputs": [{**_OK_INPUT, "datatype": "FP128"}]}}, 400),
        ("data and shape disagree", {"json": {"inputs": [{**_OK_INPUT, "shape": [2, 2]}]}}, 400),
        ("datatype and data disagree",
         {"json": {"inputs": [{**_OK_INPUT, "data": ["a"]}]}}, 400),
        ("huge declared shape",
         {"json": {"inputs": [{**_OK_INPUT, "shape": [1, 10**12], "data": [1.0]}]}}, 400),
        ("huge batch", {"json": {"inputs": [{**_OK_INPUT, "shape": [10**9, 1]}]}}, 400),
        ("negative SLO", {"json": {"inputs": [_OK_INPUT]}, "headers": {"x-slo-ms": "-5"}}, 400),
        ("non-numeric SLO",
         {"json": {"inputs": [_OK_INPUT]}, "headers": {"x-slo-ms": "fast"}}, 400),
        ("NaN SLO", {"json": {"inputs": [_OK_INPUT]}, "headers": {"x-slo-ms": "nan"}}, 400),
        ("fractional priority",
         {"json": {"inputs": [_OK_INPUT]}, "headers": {"x-priority": "1.5"}}, 400),
        ("fractional priority parameter",
         {"json": {"inputs": [_OK_INPUT], "parameters": {"x-priority": 1.5}}}, 400),
        ("unknown category",
         {"json": {"inputs": [_OK_INPUT]}, "headers": {"x-category": "batch"}}, 400),
        ("malformed SLO parameter",
         {"json": {"inputs": [_OK_INPUT], "parameters": {"x-slo-ms": "soon"}}}, 400),
        ("misspelt SLO parameter (was ignored: issue 18.2)",
         {"json": {"inputs": [_OK_INPUT], "parameters": {"slo_ms": "soon"}}}, 400),
        ("SLO parameter of the wrong type",
         {"json": {"inputs": [_OK_INPUT], "parameters": {"x-slo-ms": True}}}, 400),
    ],
)  # fmt: skip
def test_bad_input(stack: dict[str, Any], what: str, kwargs: dict[str, Any], status: int) -> None:
    r = requests.post(_infer(stack), timeout=10, **kwargs)
    assert r.status_code == status, (what, r.status_code, r.text[:300])
    if status != 200:
        assert isinstance(orjson.loads(r.content).get("error"), str), r.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/nope/infer", 404),
        ("/v2/models/m1/versions/7/infer", None),  # Triton's own 4xx, passed through
        ("/v2/models/m1/versions/x%2Fy/infer", None),
    ],
)
def test_unknown_model_or_version(stack: dict[str, Any], path: str, status: int | None) -> None:
    r = requests.post(stack["url"] + path, json={"inputs": [_OK_INPUT]}, timeout=10)
    assert 400 <= r.status_code < 500 and (status is None or r.status_code == status), r.text
    assert isinstance(orjson.loads(r.content).get("error"), str)


def test_ops_changes_need_the_token(
    stack: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{stack['url']}/synergai/v1/workers/p-0/drain"
    assert requests.post(url, timeout=5).status_code == 401
    bad = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert requests.post(url, headers=bad, timeout=5).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(url, headers=good, timeout=5).json() == {"worker": "p-0", "drained": True}
    undrain = url.replace("/drain", "/undrain")
    assert requests.post(undrain, headers=good, timeout=5).status_code == 200
    assert TOKEN not in caplog.text and TOKEN[:12] not in caplog.text  # no secrets in logs
