"""Routing hints: SLO, priority and category, from headers/metadata, parameters or defaults.

**Where.** A hint may come as an HTTP header or gRPC metadata, or under the same name in the
request's ``parameters`` (REST JSON or gRPC ``ModelInferRequest.parameters``); the header wins,
then the parameter, then the model's default from the gateway config (DESIGN.md §6).

**One rule, wherever it comes from.** Every hint given is validated here, the same way for
every source, before precedence applies (an overridden parameter must still be well formed), so
a bad hint is a 400 / ``INVALID_ARGUMENT`` that names the hint and where it came from, and never
reaches a policy:

============  ======================================  =====================================
hint          valid                                   a string (header, metadata) is
============  ======================================  =====================================
x-slo-ms      a number of milliseconds in (0, 3.6e6]  read as a decimal number (``12.5``,
                                                      ``1e3``); ``nan``, ``inf``, ``50ms`` no
x-priority    an integer in [-1000, 1000]             read as a decimal number that is an
                                                      integer (``2``, ``2.0``; not ``1.5``)
x-category    ``latency`` or ``frequency``            taken as is (surrounding spaces ignored)
============  ======================================  =====================================

A JSON or protobuf value of another type (``true``, ``null``, a list, an object) is malformed.
Names are case-insensitive in every source (as HTTP header names are).

**No silent misses.** A name that can only be a misspelt hint (``slo_ms``, ``slo-ms``,
``x_slo_ms``, ``x_priority``, ``x_category``...: :data:`LOOKALIKES`) is refused with the right
name, in a header, metadata or a parameter, rather than ignored. Bare ``priority`` and
``category`` are not hints: ``priority`` is Triton's own request priority (it passes through to
Triton), and a model may take a ``category`` parameter of its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest
from gateway.routing.types import Category

__all__ = [
    "HINT_KEYS",
    "HINT_NAMES",
    "LOOKALIKES",
    "MAX_PRIORITY",
    "MAX_SLO_MS",
    "Hints",
    "RawHints",
    "hint_items",
    "resolve_hints",
]

HINT_NAMES = ("x-slo-ms", "x-priority", "x-category")

MAX_SLO_MS = 3_600_000.0
"""An hour: anything longer is surely a unit mistake."""

MAX_PRIORITY = 1000
"""Priorities are in ``[-MAX_PRIORITY, MAX_PRIORITY]``."""


def _spellings(hint: str, bare: tuple[str, ...]) -> set[str]:
    out = set()
    for core in bare:
        for prefix in ("", "x-", "x_"):
            for name in {core, core.replace("-", "_"), core.replace("-", "")}:
                out.add(prefix + name)
    return out - {hint}


LOOKALIKES: Mapping[str, str] = {
    **{n: "x-slo-ms" for n in _spellings("x-slo-ms", ("slo-ms", "slo"))},
    **{n: "x-priority" for n in _spellings("x-priority", ("priority",)) - {"priority"}},
    **{n: "x-category" for n in _spellings("x-category", ("category",)) - {"category"}},
}
"""Lower-case names that can only be a misspelt hint, to the hint's name (refused, not ignored)."""

HINT_KEYS = frozenset(HINT_NAMES) | frozenset(LOOKALIKES)
"""Every lower-case name a front door must hand over as a hint (real or misspelt)."""
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

RawHints = Mapping[str, Any]
"""Hint values by name as received (strings from headers, JSON values from parameters)."""


@dataclass(frozen=True, slots=True)
class Hints:
    """Resolved, validated hints of one request."""

    slo_ms: float
    priority: int
    category: Category


def hint_items(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (headers, metadata, parameters) that are or look like hints.

    Names are lower-cased; everything else is left out (cheap to run on every header).
    """
    return {low: v for k, v in values.items() if (low := k.lower()) in HINT_KEYS}


def _number(value: Any, what: str) -> float:
    """A JSON/protobuf number, or a string that is a decimal number (the one parse)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"{what} must be a number, got {type(value).__name__} {value!r:.40}")
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise BadRequest(f"{what} must be a number, got {value!r:.40}")
        value = float(text)
    return float(value)


def _slo(value: Any, where: str) -> float:
    what = f"x-slo-ms ({where})"
    slo = _number(value, f"{what}: a number of milliseconds")
    if not math.isfinite(slo) or not 0 < slo <= MAX_SLO_MS:
        raise BadRequest(f"{what} must be in (0, {MAX_SLO_MS:.0f}] ms, got {value!r:.40}")
    return slo


def _priority(value: Any, where: str) -> int:
    what = f"x-priority ({where})"
    if isinstance(value, int) and not isinstance(value, bool):
        prio = value
    else:
        number = _number(value, f"{what}: an integer")
        if not number.is_integer():  # int(1.5) would silently be 1
            raise BadRequest(f"{what} must be an integer, got {value!r:.40}")
        prio = int(number)
    if not -MAX_PRIORITY <= prio <= MAX_PRIORITY:
        raise BadRequest(f"{what} must be in [-{MAX_PRIORITY}, {MAX_PRIORITY}], got {value!r:.40}")
    return prio


def _category(value: Any, where: str) -> Category:
    what = f"x-category ({where})"
    if not isinstance(value, str):
        raise BadRequest(
            f"{what} must be 'latency' or 'frequency', got {type(value).__name__} {value!r:.40}"
        )
    text = value.strip()
    if text == "latency" or text == "frequency":
        return text  # type: ignore[return-value]
    raise BadRequest(f"{what} must be 'latency' or 'frequency', got {value!r:.40}")


_CHECK = {"x-slo-ms": _slo, "x-priority": _priority, "x-category": _category}


def _given(values: RawHints, where: str) -> dict[str, Any]:
    """The validated hints of one source (names lower-cased)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        low = name.lower()
        check = _CHECK.get(low)
        if check is None:
            right = LOOKALIKES.get(low)
            if right is not None:
                raise BadRequest(f"{name!r} ({where}) is not a hint name: did you mean {right!r}?")
            continue
        if low in out:
            raise BadRequest(f"{low} given twice ({where})")
        out[low] = check(value, where)
    return out


def resolve_hints(
    headers: RawHints,
    parameters: RawHints,
    default_slo_ms: float,
    default_priority: int,
    default_category: Category,
) -> Hints:
    """Validate every hint given, then merge: header, then parameter, then default.

    Args:
        headers: header or metadata names to values (other headers may be present).
        parameters: the request's ``parameters`` object (may be empty; other parameters are
            left alone).
        default_slo_ms: the model's default SLO.
        default_priority: the model's default priority.
        default_category: the model's default category.

    Raises:
        BadRequest: a hint is malformed, out of range or of the wrong type, or a name is a
            misspelt hint (see the module docstring).
    """
    merged = _given(parameters, "parameter") if parameters else {}
    if headers:
        merged.update(_given(headers, "header/metadata"))
    return Hints(
        slo_ms=merged.get("x-slo-ms", default_slo_ms),
        priority=merged.get("x-priority", default_priority),
        category=merged.get("x-category", default_category),
    )
