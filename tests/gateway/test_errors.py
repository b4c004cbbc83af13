import orjson
import pytest

from gateway import errors as e


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (e.BadRequest("x"), 400, "INVALID_ARGUMENT"),
        (e.PayloadTooLarge("x"), 413, "INVALID_ARGUMENT"),
        (e.Unauthorized("x"), 401, "UNAUTHENTICATED"),
        (e.Forbidden("x"), 403, "PERMISSION_DENIED"),
        (e.ModelNotFound("x"), 404, "NOT_FOUND"),
        (e.Shed("x"), 429, "RESOURCE_EXHAUSTED"),
        (e.NoHealthyWorker("x"), 503, "UNAVAILABLE"),
        (e.UpstreamError("x"), 502, "UNAVAILABLE"),
        (e.UpstreamTimeout("x"), 504, "DEADLINE_EXCEEDED"),
    ],
)
def test_status_and_grpc_code(exc: e.GatewayError, status: int, code: str) -> None:
    assert exc.http_status == status
    assert exc.grpc_code == code
    assert orjson.loads(exc.json_body()) == {"error": "x"}


def test_grpc_codes_are_real_status_code_names() -> None:
    grpc = pytest.importorskip("grpc")
    for cls in (e.BadRequest, e.ModelNotFound, e.Shed, e.NoHealthyWorker, e.UpstreamTimeout):
        assert hasattr(grpc.StatusCode, cls.grpc_code)


def test_shed_retry_after_is_whole_seconds_at_least_one() -> None:
    assert e.Shed("x", retry_after_s=0).headers() == {"Retry-After": "1"}
    assert e.Shed("x", retry_after_s=3).headers() == {"Retry-After": "3"}
    assert e.NoHealthyWorker("x").headers() == {"Retry-After": "1"}
