"""Structural checks of a KServe v2 infer request, before it costs a worker anything.

Triton validates tensors itself, but a request the gateway can already see is malformed
should not take a reservation, a connection and a queue slot first, nor reach a worker at all
when its declared size is absurd. Checked on the parsed JSON (header), O(inputs), never
touching tensor data element by element:

* ``inputs`` is a non-empty list of objects, each with a string ``name``, a KServe v2
  ``datatype`` and a ``shape`` of non-negative integers;
* **declared size**: an input's element count ``prod(shape)`` cannot exceed the body's byte
  length (every element takes at least one byte, as JSON text or as binary data; a
  ``BYTES`` element at least four), unless its data lives in shared memory;
* a flat ``data`` list (scalars) holds exactly ``prod(shape)`` elements.

Anything deeper (nested ``data`` against ``shape``, values against ``datatype``) is Triton's to
refuse. It answers 400 / ``INVALID_ARGUMENT``, passed through, except for REST data it cannot
parse, where Triton 2.51 answers 500: :func:`triton_client_error` makes that a 400 (and not a
worker fault). Over gRPC the same mistakes come back as ``INVALID_ARGUMENT`` already (checked
with Triton 2.51: wrong input name, shape, datatype, byte size, missing data, a ``priority``
parameter of the wrong type).
"""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import BadRequest, StatusCode
from gateway.upstream.base import UpstreamResponse

__all__ = ["DATATYPES", "check_inputs", "triton_client_error"]

DATATYPES = frozenset(
    {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BF16", "BYTES",
    }
)  # fmt: skip
"""Tensor data types of the KServe v2 protocol."""


def _shape(inp: dict[str, Any], i: int) -> list[int]:
    shape = inp.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequest(
            f"malformed infer request: inputs[{i}].shape must be a list of non-negative integers"
        )
    return shape


def check_inputs(inputs: Any, body_bytes: int) -> list[int]:
    """Validate ``inputs`` of a request whose body is ``body_bytes`` long; the first shape.

    Raises:
        BadRequest: see the module docstring.
    """
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, dict) for x in inputs):
        raise BadRequest("malformed infer request: 'inputs' must be a non-empty list of objects")
    first: list[int] = []
    for i, inp in enumerate(inputs):
        shape = _shape(inp, i)
        if i == 0:
            first = shape
        if not isinstance(inp.get("name"), str):
            raise BadRequest(f"malformed infer request: inputs[{i}].name must be a string")
        dtype = inp.get("datatype")
        if dtype not in DATATYPES:
            raise BadRequest(
                f"malformed infer request: inputs[{i}].datatype {str(dtype)[:40]!r} is not a "
                "KServe v2 data type"
            )
        params = inp.get("parameters")
        if isinstance(params, dict) and "shared_memory_region" in params:
            continue
        n = math.prod(shape)
        per = 4 if dtype == "BYTES" and "data" not in inp else 1
        if n * per > body_bytes:
            raise BadRequest(
                f"inputs[{i}] declares {n} elements of {dtype} (shape {shape[:8]}), more than "
                f"a {body_bytes}-byte request can hold"
            )
        data = inp.get("data")
        if isinstance(data, list) and data and not isinstance(data[0], list) and len(data) != n:
            raise BadRequest(
                f"inputs[{i}] has {len(data)} data elements but shape {shape[:8]} needs {n}"
            )
    return first


_TRITON_PARSE_ERRORS = (b"Unable to parse", b"failed to parse", b"Failed to parse")
"""Starts of Triton 2.51 HTTP error messages about the request's JSON that come with a 500
(e.g. ``Unable to parse 'data': attempt to access JSON non-number as double`` for string data
in an FP32 input): the request's fault, not the worker's."""


def triton_client_error(resp: UpstreamResponse) -> UpstreamResponse:
    """``resp`` with a Triton ``INTERNAL`` (500) that blames the request's content made a 400.

    A worker must not be ejected, nor a client told to retry, for a request that can never
    succeed; everything else is returned unchanged.
    """
    if resp.code is not StatusCode.INTERNAL or not any(
        m in resp.body[:200] for m in _TRITON_PARSE_ERRORS
    ):
        return resp
    return UpstreamResponse(StatusCode.INVALID_ARGUMENT, 400, resp.body, resp.headers)
