"""The Envoy bootstrap: what it routes where, checked by Envoy's own validator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.epp.endpoints import host_port
from gateway.epp.envoy_config import EnvoyLayout, envoy_bootstrap
from gateway.epp.envoy_process import find_envoy

HTTP = ["127.0.0.1:8000", "127.0.0.1:8100"]
GRPC = ["127.0.0.1:8001", "127.0.0.1:8101"]


def _clusters(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def _hcm(doc: dict[str, Any]) -> dict[str, Any]:
    listener = doc["static_resources"]["listeners"][0]
    cfg: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return cfg


@pytest.mark.parametrize(
    ("value", "want"),
    [("http://127.0.0.1:8000", ("127.0.0.1", 8000)), ("10.0.0.5:8001", ("10.0.0.5", 8001)),
     ("http://[::1]:80/x", ("::1", 80))],
)  # fmt: skip
def test_host_port(value: str, want: tuple[str, int]) -> None:
    assert host_port(value) == want


def test_host_port_needs_a_port() -> None:
    with pytest.raises(ValueError, match="no port"):
        host_port("http://example")


def test_picker_layout_override_host_with_least_request_fallback() -> None:
    doc = envoy_bootstrap(EnvoyLayout(9000, 9901, HTTP, GRPC, epp="127.0.0.1:9002"))
    clusters = _clusters(doc)
    assert set(clusters) == {"triton_http", "triton_grpc", "epp"}
    lb = clusters["triton_http"]["load_balancing_policy"]["policies"][0]["typed_extension_config"]
    assert lb["name"] == "envoy.load_balancing_policies.override_host"
    sources = lb["typed_config"]["override_host_sources"]
    assert sources[0] == {"header": "x-gateway-destination-endpoint"}
    assert sources[1]["metadata"]["key"] == "envoy.lb"
    fallback = lb["typed_config"]["fallback_policy"]["policies"][0]["typed_extension_config"]
    assert fallback["name"].endswith("least_request")
    assert "typed_extension_protocol_options" in clusters["triton_grpc"]  # HTTP/2 upstream
    filters = _hcm(doc)["http_filters"]
    assert [f["name"] for f in filters] == ["envoy.filters.http.ext_proc",
                                            "envoy.filters.http.router"]  # fmt: skip
    ext = filters[0]["typed_config"]
    assert ext["failure_mode_allow"] is True
    assert ext["processing_mode"]["request_body_mode"] == "NONE"
    assert ext["allow_mode_override"] is True


def test_fail_closed_and_no_picker() -> None:
    closed = envoy_bootstrap(EnvoyLayout(9000, 9901, HTTP, epp="127.0.0.1:9002", fail_open=False))
    assert _hcm(closed)["http_filters"][0]["typed_config"]["failure_mode_allow"] is False
    plain = envoy_bootstrap(EnvoyLayout(9000, 9901, HTTP))
    assert [f["name"] for f in _hcm(plain)["http_filters"]] == ["envoy.filters.http.router"]
    lb = _clusters(plain)["triton_http"]["load_balancing_policy"]["policies"][0]
    assert lb["typed_extension_config"]["name"].endswith("least_request")


def test_original_dst_routes_picked_requests_and_falls_back() -> None:
    doc = envoy_bootstrap(EnvoyLayout(9000, 9901, HTTP, GRPC, epp="127.0.0.1:9002",
                                      lb="original_dst"))  # fmt: skip
    clusters = _clusters(doc)
    assert clusters["triton_http_dst"]["type"] == "ORIGINAL_DST"
    assert clusters["triton_http_dst"]["original_dst_lb_config"]["http_header_name"] == (
        "x-gateway-destination-endpoint"
    )
    routes = _hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]
    assert [r["route"]["cluster"] for r in routes] == [
        "triton_grpc_dst", "triton_http_dst", "triton_grpc", "triton_http"]  # fmt: skip


def test_needs_endpoints() -> None:
    with pytest.raises(ValueError, match="at least one"):
        envoy_bootstrap(EnvoyLayout(9000, 9901, []))


@pytest.mark.parametrize("lb", ["override_host", "original_dst"])
@pytest.mark.parametrize("fail_open", [True, False])
def test_envoy_accepts_the_bootstrap(tmp_path: Path, lb: Any, fail_open: bool) -> None:
    layout = EnvoyLayout(9000, 9901, HTTP, GRPC, epp="127.0.0.1:9002", lb=lb,
                         fail_open=fail_open)  # fmt: skip
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy_bootstrap(layout)), encoding="utf-8")
    out = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(path), "--disable-hot-restart",
         "-l", "error"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
