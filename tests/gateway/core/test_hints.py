import re

import pytest

from gateway.core.hints import HINT_NAMES, LOOKALIKES, Hints, resolve_hints
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


@pytest.mark.parametrize(
    ("headers", "params", "needle"),
    [
        ({}, {"slo_ms": "soon"}, "did you mean 'x-slo-ms'"),  # the report: was silently ignored
        ({}, {"slo_ms": 50}, "did you mean 'x-slo-ms'"),
        ({"x-slo_ms": "50"}, {}, "did you mean 'x-slo-ms'"),
        ({}, {"x_priority": 1}, "did you mean 'x-priority'"),
        ({}, {"X_Category": "latency"}, "did you mean 'x-category'"),
        ({}, {"x-slo-ms": None}, "x-slo-ms (parameter)"),
        ({}, {"x-category": None}, "x-category (parameter)"),
        ({"x-slo-ms": "10"}, {"x-slo-ms": "soon"}, "x-slo-ms (parameter)"),  # overridden: checked
        ({}, {"x-slo-ms": 5, "X-SLO-MS": 6}, "given twice"),
        ({"x-slo-ms": "50ms"}, {}, "x-slo-ms (header/metadata)"),
    ],
)
def test_refusals_name_the_hint_and_where(
    headers: dict[str, str], params: dict[str, object], needle: str
) -> None:
    with pytest.raises(BadRequest, match=re.escape(needle)):
        resolve_hints(headers, params, *D)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "params", "want"),
    [
        ({"x-priority": " 2.0 "}, {}, Hints(100.0, 2, "latency")),
        ({"x-slo-ms": "1e3"}, {}, Hints(1000.0, 0, "latency")),
        ({}, {"X-Category": " frequency "}, Hints(100.0, 0, "frequency")),
        ({}, {"priority": "high", "category": 3, "sequence_id": 4}, Hints(100.0, 0, "latency")),
    ],
)
def test_one_parse_for_text_and_numbers(
    headers: dict[str, str], params: dict[str, object], want: Hints
) -> None:
    assert resolve_hints(headers, params, *D) == want  # type: ignore[arg-type]


def test_lookalikes_never_shadow_a_real_name() -> None:
    assert not set(LOOKALIKES) & set(HINT_NAMES)
    assert "priority" not in LOOKALIKES and "category" not in LOOKALIKES
    assert LOOKALIKES["slo_ms"] == "x-slo-ms"
