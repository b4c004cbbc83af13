import pytest

from gateway.core.hints import Hints, resolve_hints
from gateway.errors import BadRequest

D = (100.0, 0, "latency")


@pytest.mark.parametrize(
    ("headers", "params", "want"),
    [
        ({}, {}, Hints(100.0, 0, "latency")),
        ({"x-slo-ms": "25.5"}, {}, Hints(25.5, 0, "latency")),
        (
            {},
            {"x-slo-ms": 30, "x-priority": 2, "x-category": "frequency"},
            Hints(30, 2, "frequency"),
        ),
        ({"x-slo-ms": "10"}, {"x-slo-ms": 30}, Hints(10, 0, "latency")),
        ({"x-priority": "-3"}, {"x-priority": 5}, Hints(100.0, -3, "latency")),
        ({}, {"x-priority": 2.0}, Hints(100.0, 2, "latency")),
    ],
)
def test_precedence_header_then_parameter_then_default(
    headers: dict[str, str], params: dict[str, object], want: Hints
) -> None:
    assert resolve_hints(headers, params, *D) == want  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"x-slo-ms": "-5"}, {}),
        ({"x-slo-ms": "0"}, {}),
        ({"x-slo-ms": "abc"}, {}),
        ({"x-slo-ms": "nan"}, {}),
        ({"x-slo-ms": "inf"}, {}),
        ({"x-slo-ms": "1e12"}, {}),
        ({}, {"x-slo-ms": True}),
        ({}, {"x-slo-ms": [1]}),
        ({"x-priority": "high"}, {}),
        ({"x-priority": "1.5"}, {}),
        ({"x-priority": "100000"}, {}),
        ({}, {"x-priority": False}),
        ({"x-category": "fast"}, {}),
        ({}, {"x-category": 3}),
    ],
)
def test_invalid_hints_are_bad_request(headers: dict[str, str], params: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        resolve_hints(headers, params, *D)  # type: ignore[arg-type]
