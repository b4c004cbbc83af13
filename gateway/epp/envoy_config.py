"""The Envoy bootstrap that puts our endpoint picker in front of a Triton fleet.

One listener (HTTP/1.1 and HTTP/2 auto-detected, so ``tritonclient.http`` and
``tritonclient.grpc`` both connect to it) with two routes: gRPC requests
(``content-type: application/grpc``) to the fleet's gRPC ports, everything else to its HTTP
ports. Filter chain::

    ext_proc (our EPP: request headers, response headers and trailers; bodies only when the
              EPP asks for one, see gateway.epp.exchange) -> router

Clusters, one pair per protocol:

* ``lb="override_host"`` (default): a STATIC cluster of every worker endpoint with Envoy's
  ``envoy.load_balancing_policies.override_host`` policy. It reads the picked endpoints from
  the ``x-gateway-destination-endpoint`` header, else from the ``envoy.lb`` dynamic metadata
  (the Endpoint Picker Protocol's two channels), tries them **in order** on retries, and falls
  back to Envoy's own ``least_request`` when there is no pick: that is what keeps serving when
  the EPP is gone and ``failure_mode_allow`` (GIE ``FailOpen``) let the request through. It
  writes the endpoint that served into ``envoy.lb/x-gateway-destination-endpoint-served``,
  which ext_proc forwards back to the EPP with the response (protocol 004, "Destination
  Endpoint Served").
* ``lb="original_dst"``: the ``ORIGINAL_DST`` cluster the GIE reference setups started with: it
  connects to whatever the header names (no endpoint list needed) but reads only the first
  address, so a retry goes to the same worker; requests without a pick go to a least-request
  cluster of the configured workers (fail-open).
* ``picker=False``: no ext_proc at all, the static cluster with ``least_request`` (the
  ``envoy`` row of ``synergai bench overhead``).

``failure_mode_allow`` false (GIE ``FailClose``): a request the EPP cannot answer gets Envoy's
500 at once; ``status_on_error`` turns it into 503 (GIE asks for the request to be dropped; 503
tells a client to come back later, as our gateway's "no healthy worker" does).

Timeouts: the route's default is ``request_timeout_s``; the EPP sets
``x-envoy-upstream-rq-timeout-ms`` per request from the SLO, as the gateway's own
``gateway.core.timeouts`` does. Retries (connect failure, refused stream, reset; gRPC
``unavailable``) go down the picked list; ``num_retries`` is the list's useful length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.epp.endpoints import host_port, is_ip

__all__ = [
    "DEST_HEADER",
    "LB_NAMESPACE",
    "SERVED_KEY",
    "EnvoyLayout",
    "envoy_bootstrap",
]

DEST_HEADER = "x-gateway-destination-endpoint"
LB_NAMESPACE = "envoy.lb"
SERVED_KEY = "x-gateway-destination-endpoint-served"

LbMode = Literal["override_host", "original_dst"]

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
_EXT_PROC = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_LB = "type.googleapis.com/envoy.extensions.load_balancing_policies."
_HTTP_OPTS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class EnvoyLayout:
    """What the Envoy in front of a fleet looks like.

    Attributes:
        listen_port: where clients connect (REST and gRPC on one port).
        admin_port: Envoy's admin interface (``/ready``, ``/stats``), loopback only.
        http_endpoints: the workers' HTTP ``host:port``.
        grpc_endpoints: the workers' gRPC ``host:port``.
        epp: the endpoint picker's ``host:port``; None for no picker (Envoy balancing alone).
        fail_open: GIE ``failureMode: FailOpen`` (``failure_mode_allow``).
        lb: ``override_host`` (ordered fallbacks) or ``original_dst`` (first address only).
        request_timeout_s: route timeout when the EPP sets none.
        num_retries: retries down the picked list (connect failure, reset).
        epp_timeout_ms: how long Envoy waits for one EPP answer (``message_timeout``).
        listen_host: the listener's address.
    """

    listen_port: int
    admin_port: int
    http_endpoints: Sequence[str]
    grpc_endpoints: Sequence[str] = ()
    epp: str | None = None
    fail_open: bool = True
    lb: LbMode = "override_host"
    request_timeout_s: float = 30.0
    num_retries: int = 2
    epp_timeout_ms: int = 1000
    listen_host: str = "127.0.0.1"


def _addr(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _typed(name: str, type_url: str, **config: Any) -> dict[str, Any]:
    return {"name": name, "typed_config": {"@type": type_url, **config}}


def _least_request() -> dict[str, Any]:
    return {
        "policies": [
            {
                "typed_extension_config": _typed(
                    "envoy.load_balancing_policies.least_request",
                    _LB + "least_request.v3.LeastRequest",
                )
            }
        ]
    }


def _override_host() -> dict[str, Any]:
    source = {"key": LB_NAMESPACE, "path": [{"key": DEST_HEADER}]}
    served = {"key": LB_NAMESPACE, "path": [{"key": SERVED_KEY}]}
    cfg = _typed(
        "envoy.load_balancing_policies.override_host",
        _LB + "override_host.v3.OverrideHost",
        override_host_sources=[{"header": DEST_HEADER}, {"metadata": source}],
        selected_host_key=served,
        fallback_policy=_least_request(),
    )
    return {"policies": [{"typed_extension_config": cfg}]}


def _h2() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _HTTP_OPTS,
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def _static(name: str, endpoints: Sequence[str], lb: dict[str, Any], h2: bool) -> dict[str, Any]:
    """A cluster of fixed endpoints: ``STATIC`` for IP literals, ``STRICT_DNS`` for hostnames."""
    hosts = [host_port(e) for e in endpoints]
    eps = [{"endpoint": {"address": _addr(h, p)}} for h, p in hosts]
    literal = all(is_ip(h) for h, _ in hosts)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if literal else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_balancing_policy": lb,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]},
        # one Envoy in front of N Triton servers: never trip Envoy's default 1024 limits first
        "circuit_breakers": {
            "thresholds": [{"max_connections": 100000, "max_pending_requests": 100000,
                            "max_requests": 100000, "max_retries": 100000}]
        },
    }  # fmt: skip
    if h2:
        cluster["typed_extension_protocol_options"] = _h2()
    return cluster


def _original_dst(name: str, h2: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "ORIGINAL_DST",
        "connect_timeout": "1s",
        "lb_policy": "CLUSTER_PROVIDED",
        "original_dst_lb_config": {"use_http_header": True, "http_header_name": DEST_HEADER},
    }
    if h2:
        cluster["typed_extension_protocol_options"] = _h2()
    return cluster


def _route(cluster: str, layout: EnvoyLayout, grpc: bool) -> dict[str, Any]:
    retry_on = "connect-failure,refused-stream,reset"
    if grpc:
        retry_on += ",unavailable"
    return {
        "cluster": cluster,
        "timeout": f"{layout.request_timeout_s:g}s",
        "retry_policy": {"retry_on": retry_on, "num_retries": layout.num_retries},
    }


def _routes(layout: EnvoyLayout) -> list[dict[str, Any]]:
    is_grpc: list[dict[str, Any]] = [
        {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
    ]
    grpc_match: dict[str, Any] = {"prefix": "/", "headers": is_grpc}
    picked: list[dict[str, Any]] = [{"name": DEST_HEADER, "present_match": True}]
    routes: list[dict[str, Any]] = []
    if layout.lb == "original_dst" and layout.epp is not None:
        routes += [
            {"match": {"prefix": "/", "headers": is_grpc + picked},
             "route": _route("triton_grpc_dst", layout, True)},
            {"match": {"prefix": "/", "headers": picked},
             "route": _route("triton_http_dst", layout, False)},
        ]  # fmt: skip
    if layout.grpc_endpoints:
        routes.append({"match": grpc_match, "route": _route("triton_grpc", layout, True)})
    routes.append({"match": {"prefix": "/"}, "route": _route("triton_http", layout, False)})
    return routes


def _ext_proc(layout: EnvoyLayout) -> dict[str, Any]:
    return _typed(
        "envoy.filters.http.ext_proc",
        _EXT_PROC,
        grpc_service={
            "envoy_grpc": {"cluster_name": "epp"},
            "timeout": f"{layout.epp_timeout_ms / 1000:g}s",
        },
        failure_mode_allow=layout.fail_open,
        status_on_error={"code": "ServiceUnavailable"},
        processing_mode={
            "request_header_mode": "SEND",
            "response_header_mode": "SEND",
            "request_body_mode": "NONE",
            "response_body_mode": "NONE",
            "request_trailer_mode": "SKIP",
            "response_trailer_mode": "SEND",
        },
        # the EPP asks for the body of a gRPC call whose model name is only in the body
        allow_mode_override=True,
        message_timeout=f"{layout.epp_timeout_ms / 1000:g}s",
        metadata_options={
            "forwarding_namespaces": {"untyped": [LB_NAMESPACE]},
            "receiving_namespaces": {"untyped": [LB_NAMESPACE]},
        },
    )


def envoy_bootstrap(layout: EnvoyLayout) -> dict[str, Any]:
    """The whole Envoy v3 bootstrap for ``layout`` (write it as JSON or YAML).

    Raises:
        ValueError: an endpoint has no port, or there are no HTTP endpoints.
    """
    if not layout.http_endpoints:
        raise ValueError("Envoy needs at least one worker endpoint")
    balanced = (
        _override_host()
        if layout.epp is not None and layout.lb == "override_host"
        else (_least_request())
    )
    clusters = [_static("triton_http", layout.http_endpoints, balanced, h2=False)]
    if layout.grpc_endpoints:
        clusters.append(_static("triton_grpc", layout.grpc_endpoints, balanced, h2=True))
    filters: list[dict[str, Any]] = []
    if layout.epp is not None:
        filters.append(_ext_proc(layout))
        epp_host, epp_port = host_port(layout.epp)
        epp = _static("epp", [f"{epp_host}:{epp_port}"], _least_request(), h2=True)
        clusters.append(epp)
        if layout.lb == "original_dst":
            clusters.append(_original_dst("triton_http_dst", h2=False))
            clusters.append(_original_dst("triton_grpc_dst", h2=True))
    filters.append(_typed("envoy.filters.http.router", _ROUTER))
    hcm = _typed(
        "envoy.filters.network.http_connection_manager",
        _HCM + "HttpConnectionManager",
        stat_prefix="ingress",
        codec_type="AUTO",
        route_config={
            "name": "inference",
            "virtual_hosts": [{"name": "fleet", "domains": ["*"], "routes": _routes(layout)}],
        },
        http_filters=filters,
        # large tensors: do not let per-stream windows throttle a 1 MiB request
        http2_protocol_options={"initial_stream_window_size": 16 * 1024 * 1024},
    )
    listener = {
        "name": "inference",
        "address": _addr(layout.listen_host, layout.listen_port),
        "filter_chains": [{"filters": [hcm]}],
    }
    return {
        "node": {"id": "synergai-envoy", "cluster": "synergai"},
        "admin": {"address": _addr("127.0.0.1", layout.admin_port)},
        "static_resources": {"listeners": [listener], "clusters": clusters},
        "layered_runtime": {
            "layers": [
                {"name": "static", "static_layer": {"overload.global_downstream_max_connections":
                                                     50000}}
            ]
        },
    }  # fmt: skip
