import orjson
import pytest

from gateway.core import kserve
from gateway.core.kserve import BodyFacts, peek_infer_body
from gateway.errors import BadRequest


def _doc(shape: list[int], **extra: object) -> dict[str, object]:
    return {"inputs": [{"name": "INPUT0", "shape": shape, "datatype": "FP32", "data": []}], **extra}


@pytest.mark.parametrize(
    ("doc", "facts"),
    [
        (_doc([4, 3]), BodyFacts(4, {})),
        (_doc([]), BodyFacts(1, {})),
        (_doc([0, 3]), BodyFacts(1, {})),
        (_doc([2], parameters={"x-slo-ms": 30}), BodyFacts(2, {"x-slo-ms": 30})),
    ],
)
def test_json_body(doc: dict[str, object], facts: BodyFacts) -> None:
    assert peek_infer_body(orjson.dumps(doc), None) == facts


def test_binary_extension_parses_only_the_header() -> None:
    header = orjson.dumps(_doc([3, 4], parameters={"x-priority": 2}))
    tensors = b"\xff\xfe not json at all \x00" * 10
    facts = peek_infer_body(header + tensors, str(len(header)))
    assert facts == BodyFacts(3, {"x-priority": 2})


@pytest.mark.parametrize(
    ("body", "hlen", "match"),
    [
        (b"{bad", None, "invalid JSON"),
        (b"[]", None, "must be an object"),
        (b"{}", None, "'inputs'"),
        (b'{"inputs": [1]}', None, "'inputs'"),
        (b'{"inputs": [{"shape": "x"}]}', None, "shape"),
        (b'{"inputs": [{"shape": [-1]}]}', None, "shape"),
        (b'{"inputs": [{"shape": [true]}]}', None, "shape"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}], "parameters": 3}',
            None,
            "parameters",
        ),
        (b"{}", "abc", "must be an integer"),
        (b"{}", "0", "outside"),
        (b"{}", "99", "outside"),
    ],
)
def test_malformed_is_bad_request(body: bytes, hlen: str | None, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        peek_infer_body(body, hlen)


def test_compressed_body_is_not_peeked() -> None:
    assert peek_infer_body(b"\x1f\x8bgzip", None, "gzip") == BodyFacts()


def test_huge_json_body_scans_for_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kserve, "FULL_PARSE_LIMIT", 100)
    body = orjson.dumps(_doc([7, 1000])) + b" " * 200
    assert peek_infer_body(body, None).batch == 7
