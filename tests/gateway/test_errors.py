from pathlib import Path

import orjson
import pytest

from gateway import errors as e
from gateway.errors import Blame, StatusCode

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    ("exc", "status", "code", "fault"),
    [
        (e.BadRequest("x"), 400, "INVALID_ARGUMENT", Blame.CLIENT),
        (e.PayloadTooLarge("x"), 413, "INVALID_ARGUMENT", Blame.CLIENT),
        (e.UnsupportedMediaType("x"), 415, "INVALID_ARGUMENT", Blame.CLIENT),
        (e.Unauthorized("x"), 401, "UNAUTHENTICATED", Blame.CLIENT),
        (e.Forbidden("x"), 403, "PERMISSION_DENIED", Blame.CLIENT),
        (e.ModelNotFound("x"), 404, "NOT_FOUND", Blame.CLIENT),
        (e.Shed("x"), 429, "RESOURCE_EXHAUSTED", Blame.CLIENT),
        (e.NoHealthyWorker("x"), 503, "UNAVAILABLE", Blame.CLIENT),
        (e.UpstreamError("x"), 502, "UNAVAILABLE", Blame.WORKER),
        (e.UpstreamConnectError("x"), 502, "UNAVAILABLE", Blame.WORKER),
        (e.UpstreamTimeout("x"), 504, "DEADLINE_EXCEEDED", Blame.WORKER),
        (e.ClientDeadlineExceeded("x"), 499, "DEADLINE_EXCEEDED", Blame.CLIENT),
    ],
)
def test_status_code_and_fault(exc: e.GatewayError, status: int, code: str, fault: Blame) -> None:
    assert exc.http_status == status
    assert exc.code is StatusCode[code]
    assert exc.fault is fault
    assert orjson.loads(exc.json_body()) == {"error": "x"}


def test_status_codes_are_grpcs() -> None:
    grpc = pytest.importorskip("grpc")
    assert {c.name: c.value for c in StatusCode} == {c.name: c.value[0] for c in grpc.StatusCode}


def test_the_table_lists_every_code_once() -> None:
    assert sorted(row.code for row in e.STATUS_TABLE) == sorted(StatusCode)


@pytest.mark.parametrize("row", e.STATUS_TABLE, ids=lambda r: r.code.name)
def test_http_and_blame_follow_the_table(row: e.StatusRow) -> None:
    assert e.http_status(row.code) == row.http
    assert e.blame(row.code) is row.blame
    # a 5xx is the worker's, except UNIMPLEMENTED (501: the request asks for what no worker has)
    if row.code is not StatusCode.UNIMPLEMENTED:
        assert (row.blame is Blame.WORKER) == (row.http >= 500)
    back = e.code_for_http(row.http)
    assert e.http_status(back) == row.http and e.blame(back) is row.blame


@pytest.mark.parametrize(
    ("status", "code"),
    [(200, "OK"), (204, "OK"), (400, "INVALID_ARGUMENT"), (404, "NOT_FOUND"),
     (409, "ALREADY_EXISTS"), (413, "INVALID_ARGUMENT"), (422, "INVALID_ARGUMENT"),
     (429, "RESOURCE_EXHAUSTED"), (499, "CANCELLED"), (500, "INTERNAL"), (501, "UNIMPLEMENTED"),
     (502, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"), (302, "UNKNOWN")],
)  # fmt: skip
def test_code_for_http(status: int, code: str) -> None:
    assert e.code_for_http(status) is StatusCode[code]


def test_docs_grpc_table_is_the_table() -> None:
    assert e.status_table_markdown() in (DOCS / "grpc.md").read_text(encoding="utf-8")


def test_shed_retry_after_is_whole_seconds_at_least_one() -> None:
    assert e.Shed("x", retry_after_s=0).headers() == {"Retry-After": "1"}
    assert e.Shed("x", retry_after_s=3).headers() == {"Retry-After": "3"}
    assert e.NoHealthyWorker("x").headers() == {"Retry-After": "1"}
