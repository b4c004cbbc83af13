"""OpenAPI description of the infer routes (their handlers read the raw body themselves).

Without it the schema would say nothing about the body or the hint headers, so clients and
the schema-driven fuzzer (``tests/integration/test_fuzz.py``) could not know them. The body is
the KServe v2 inference request (JSON), or Triton's binary-tensor form: a JSON header of
``Inference-Header-Content-Length`` bytes followed by raw tensor bytes.
"""

from __future__ import annotations

from typing import Any

from gateway.core.validate import DATATYPES

__all__ = ["INFER_OPENAPI"]

_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}

_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "x-slo-ms": {"type": "number", "exclusiveMinimum": 0},
                "x-priority": {"type": "integer"},
                "x-category": {"type": "string", "enum": ["latency", "frequency"]},
            },
        },
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}


def _header(name: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema, "description": what}


INFER_OPENAPI: dict[str, Any] = {
    "parameters": [
        _header("x-slo-ms", {"type": "number", "exclusiveMinimum": 0}, "latency objective, ms"),
        _header("x-priority", {"type": "integer"}, "higher is more important; 0 is sheddable"),
        _header("x-category", {"type": "string", "enum": ["latency", "frequency"]}, "task kind"),
        _header(
            "Inference-Header-Content-Length",
            {"type": "integer", "minimum": 1},
            "binary-tensor extension: length of the JSON header at the start of the body",
        ),
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _REQUEST},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "400": {"description": 'malformed request or hint ({"error": ...})'},
        "404": {"description": "unknown model"},
        "413": {"description": "body over max_body_bytes"},
        "415": {"description": "Content-Type neither JSON nor binary tensors"},
        "429": {"description": "shed (SLO cannot be met, or overload); Retry-After"},
        "502": {"description": "worker unreachable"},
        "503": {"description": "no healthy worker"},
        "504": {"description": "worker did not answer in time"},
    },
}
"""``openapi_extra`` of the two infer routes."""
