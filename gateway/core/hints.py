"""Routing hints: SLO, priority and category, from headers/metadata, parameters or defaults.

A hint may come as an HTTP header or gRPC metadata (``x-slo-ms``, ``x-priority``,
``x-category``), or under the same name in the request's ``parameters``; the header wins, then
the parameter, then the model's default from the gateway config (DESIGN.md §6). Values are
validated here once, so a bad hint is a 400 / INVALID_ARGUMENT and never reaches a policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest
from gateway.routing.types import Category

__all__ = ["HINT_NAMES", "Hints", "RawHints", "resolve_hints"]

HINT_NAMES = ("x-slo-ms", "x-priority", "x-category")

MAX_SLO_MS = 3_600_000.0
"""An hour: anything longer is surely a unit mistake."""

RawHints = Mapping[str, Any]
"""Hint values by name as received (strings from headers, JSON values from parameters)."""


@dataclass(frozen=True, slots=True)
class Hints:
    """Resolved, validated hints of one request."""

    slo_ms: float
    priority: int
    category: Category


def _slo(value: Any) -> float:
    if isinstance(value, bool):
        raise BadRequest("x-slo-ms must be a number of milliseconds")
    try:
        slo = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"x-slo-ms must be a number of milliseconds, got {value!r}") from None
    if not math.isfinite(slo) or not 0 < slo <= MAX_SLO_MS:
        raise BadRequest(f"x-slo-ms must be in (0, {MAX_SLO_MS:.0f}], got {value!r}")
    return slo


def _priority(value: Any) -> int:
    if isinstance(value, bool):
        raise BadRequest("x-priority must be an integer")
    if isinstance(value, float):
        if not value.is_integer():  # int(1.5) would silently be 1
            raise BadRequest(f"x-priority must be an integer, got {value!r}")
        value = int(value)
    try:
        prio = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"x-priority must be an integer, got {value!r}") from None
    if not -1000 <= prio <= 1000:
        raise BadRequest(f"x-priority must be in [-1000, 1000], got {prio}")
    return prio


def _category(value: Any) -> Category:
    if value == "latency" or value == "frequency":
        return value  # type: ignore[no-any-return]
    raise BadRequest(f"x-category must be 'latency' or 'frequency', got {value!r}")


def resolve_hints(
    headers: RawHints,
    parameters: RawHints,
    default_slo_ms: float,
    default_priority: int,
    default_category: Category,
) -> Hints:
    """Merge header, parameter and default hints and validate them.

    Args:
        headers: lower-case header or metadata names to values.
        parameters: the request's ``parameters`` object (may be empty).
        default_slo_ms: the model's default SLO.
        default_priority: the model's default priority.
        default_category: the model's default category.

    Raises:
        BadRequest: a given hint is malformed or out of range.
    """
    slo = headers.get("x-slo-ms")
    if slo is None:
        slo = parameters.get("x-slo-ms")
    prio = headers.get("x-priority")
    if prio is None:
        prio = parameters.get("x-priority")
    cat = headers.get("x-category")
    if cat is None:
        cat = parameters.get("x-category")
    return Hints(
        slo_ms=default_slo_ms if slo is None else _slo(slo),
        priority=default_priority if prio is None else _priority(prio),
        category=default_category if cat is None else _category(cat),
    )
