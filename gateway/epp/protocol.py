"""What the Endpoint Picker Protocol and KServe v2 put in an ext_proc request, read cheaply.

The Gateway API Inference Extension's Endpoint Picker Protocol (its proposal 004) runs over
Envoy's ``envoy.service.ext_proc.v3.ExternalProcessor``: the proxy streams each HTTP request's
headers (and, when asked, body) to the picker, which answers with the chosen endpoint(s) as
the header ``x-gateway-destination-endpoint`` **and** the dynamic metadata
``envoy.lb/x-gateway-destination-endpoint`` (same value: ``ip:port[,ip:port...]``, the order
retries follow). The proxy may restrict the choice with the filter metadata
``envoy.lb.subset_hint/x-gateway-destination-endpoint-subset`` and reports the endpoint that
served in ``envoy.lb/x-gateway-destination-endpoint-served``.

What a request is, from its ``:path`` and ``content-type``:

================================================  ===========  ==========================
path                                              kind         model from
================================================  ===========  ==========================
``/v2/models/{m}[/versions/{v}]/infer``           ``infer``    the path
``/v2/models/{m}[/versions/{v}][/ready]``         ``meta``     the path
``/inference.GRPCInferenceService/ModelInfer``    ``infer``    ``x-synergai-model`` or body
``.../ModelMetadata``, ``ModelReady``, ...        ``meta``     ``x-synergai-model`` or body
anything else (``/v2/health/*``, ServerLive...)   ``other``    none: Envoy's own balancing
================================================  ===========  ==========================

Routing hints (DESIGN.md §6) come from headers: ``x-slo-ms``, ``x-priority``, ``x-category``;
the GIE ecosystem's names are accepted too (:data:`GIE_SLO_HEADER`,
:data:`GIE_OBJECTIVE_HEADER`; docs/endpoint-picker.md has the mapping).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.epp.envoy_config import DEST_HEADER, LB_NAMESPACE, SERVED_KEY

__all__ = [
    "BATCH_HEADER",
    "DEST_HEADER",
    "GIE_OBJECTIVE_HEADER",
    "GIE_SLO_HEADER",
    "GRPC_SERVICE",
    "LB_NAMESPACE",
    "MODEL_HEADER",
    "SERVED_KEY",
    "SUBSET_KEY",
    "SUBSET_NAMESPACE",
    "Target",
    "classify",
    "header_map",
    "served_endpoint",
    "subset_hint",
]

SUBSET_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_KEY = "x-gateway-destination-endpoint-subset"

MODEL_HEADER = "x-synergai-model"
"""gRPC metadata naming the model, so a ModelInfer is routed on headers alone (no body)."""

BATCH_HEADER = "x-synergai-batch"
"""Items in the request, when the client batches (REST bodies are not read; default 1)."""

GIE_SLO_HEADER = "x-slo-ttft-ms"
"""The GIE / llm-d latency-SLO header (time to first token). A KServe v2 answer is one
message, so its first byte is its last: this is our ``x-slo-ms`` when that one is absent."""

GIE_OBJECTIVE_HEADER = "x-gateway-inference-objective"
"""Names an InferenceObjective (GIE): looked up in the EPP's ``objectives`` config for a
priority (and optionally SLO / category)."""

GRPC_SERVICE = "/inference.GRPCInferenceService/"
_GRPC_META = frozenset({"ModelMetadata", "ModelReady", "ModelConfig", "ModelStatistics"})

Kind = Literal["infer", "meta", "other"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a request is and which model it names (None: unknown until its body is read).

    Attributes:
        kind: ``infer`` (routed and booked), ``meta`` (routed to a worker serving the model,
            not booked) or ``other`` (no pick).
        model: the model name, when the path or a header names it.
        version: the model version from the path, if any.
        grpc: a gRPC call (its model may be in the body; its status is in the trailers).
    """

    kind: Kind
    model: str | None = None
    version: str | None = None
    grpc: bool = False


_OTHER = Target("other")
_OTHER_GRPC = Target("other", grpc=True)


def header_map(headers: Iterable[Any]) -> dict[str, str]:
    """``{name: value}`` of an ext_proc ``HeaderMap``'s entries (``raw_value`` preferred).

    Envoy sends lower-case names; a repeated header keeps its first value.
    """
    out: dict[str, str] = {}
    for h in headers:
        key = h.key  # each read of a protobuf field builds a new str: once
        if key not in out:
            raw = h.raw_value
            out[key] = raw.decode("utf-8", "replace") if raw else h.value
    return out


def _kserve_path(path: str) -> Target:
    """Classify a KServe v2 REST path (query string already removed)."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "v2" or parts[1] != "models" or not parts[2]:
        return _OTHER
    model = parts[2]
    rest = parts[3:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
    if rest == ["infer"]:
        return Target("infer", model, version)
    if not rest or rest == ["ready"] or rest == ["config"]:
        return Target("meta", model, version)
    return _OTHER


def classify(headers: Mapping[str, str], model_header: str = MODEL_HEADER) -> Target:
    """The :class:`Target` of a request from its pseudo-headers and ``content-type``."""
    path = headers.get(":path", "")
    if headers.get("content-type", "").startswith("application/grpc"):
        if not path.startswith(GRPC_SERVICE):
            return _OTHER_GRPC
        method = path[len(GRPC_SERVICE) :]
        if method == "ModelInfer":
            kind: Kind = "infer"
        elif method in _GRPC_META:
            kind = "meta"
        else:
            return _OTHER_GRPC
        return Target(kind, headers.get(model_header) or None, None, grpc=True)
    found = _REST_TARGETS.get(path)
    if found is None:
        found = _kserve_path(path.split("?", 1)[0])
        if len(_REST_TARGETS) < _MAX_REST_TARGETS:
            _REST_TARGETS[path] = found
    return found


_REST_TARGETS: dict[str, Target] = {}
_MAX_REST_TARGETS = 4096
"""REST paths already classified (a :class:`Target` is immutable): the same few paths come
again and again, and splitting one and building its target costs 1 µs."""


def _metadata(msg: Any, namespace: str) -> Any:
    """The ``namespace`` entry of a ProcessingRequest's ``metadata_context``, or None."""
    if not msg.HasField("metadata_context"):
        return None
    fm = msg.metadata_context.filter_metadata
    return fm.get(namespace)


def _endpoints(value: Any) -> list[str]:
    """Endpoints of a protobuf ``Value``: ``"a,b"`` or a list of such strings."""
    kind = value.WhichOneof("kind")
    items: list[str] = []
    if kind == "string_value":
        items = [value.string_value]
    elif kind == "list_value":
        items = [v.string_value for v in value.list_value.values]
    return [e.strip() for item in items for e in item.split(",") if e.strip()]


def subset_hint(msg: Any) -> frozenset[str] | None:
    """The endpoints the proxy allows (``envoy.lb.subset_hint``), or None when it sets none.

    An empty set means "none allowed": the picker must answer 503 (protocol 004).
    """
    ns = _metadata(msg, SUBSET_NAMESPACE)
    if ns is None or SUBSET_KEY not in ns.fields:
        return None
    return frozenset(_endpoints(ns.fields[SUBSET_KEY]))


def served_endpoint(msg: Any) -> str | None:
    """The endpoint that served the request (``envoy.lb/...-served``), when the proxy says."""
    ns = _metadata(msg, LB_NAMESPACE)
    if ns is None or SERVED_KEY not in ns.fields:
        return None
    found = _endpoints(ns.fields[SERVED_KEY])
    return found[0] if found else None
