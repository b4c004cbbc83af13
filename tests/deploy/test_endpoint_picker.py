"""k8s/components/endpoint-picker: our EPP behind a Gateway API implementation, rendered and held.

Rendered by the real ``kubectl kustomize`` on the dev and edge-cloud overlays. Kubernetes kinds
validate against Kubernetes' schemas (strict); the InferencePools against an InferencePool v1
JSON schema written from the GIE API for the fields we use (``inferencepool-v1.schema.json``)
plus its CEL rules; the wiring (pool -> EPP Service -> EPP Deployment -> config) must hold.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.settings import load_settings

from .conftest import render

Manifest = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
COMPONENT = "k8s/components/endpoint-picker"
SCHEMA = json.loads((Path(__file__).parent / "inferencepool-v1.schema.json").read_text())
CRD_KINDS = {"InferencePool", "Gateway", "HTTPRoute", "GRPCRoute"}
K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def docs(kustomize: list[str]) -> dict[str, list[Manifest]]:
    return {
        overlay: render(kustomize, f"k8s/overlays/{overlay}", [COMPONENT])
        for overlay in ("dev", "edge-cloud")
    }


def _kind(docs: list[Manifest], kind: str) -> Iterator[Manifest]:
    return (d for d in docs if d["kind"] == kind)


def _named(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [d for d in _kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def check_pool(doc: Manifest) -> None:
    """The schema plus the API's CEL rules (unique target ports; a Service ref needs a port)."""
    jsonschema.validate(doc, SCHEMA)
    numbers = [p["number"] for p in doc["spec"]["targetPorts"]]
    if len(numbers) != len(set(numbers)):
        raise jsonschema.ValidationError("port number must be unique")
    ref = doc["spec"].get("endpointPickerRef")
    if ref is not None and ref.get("kind", "Service") == "Service" and "port" not in ref:
        raise jsonschema.ValidationError("port is required when kind is 'Service'")


def test_kubernetes_kinds_validate(docs: dict[str, list[Manifest]]) -> None:
    for overlay, rendered in docs.items():
        for doc in rendered:
            if doc["kind"] not in CRD_KINDS and "epp" in doc["metadata"]["name"]:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert _named(rendered, "Deployment", "synergai-epp"), overlay


def test_inference_pools_validate_against_the_v1_schema(docs: dict[str, list[Manifest]]) -> None:
    for rendered in docs.values():
        pools = list(_kind(rendered, "InferencePool"))
        assert {p["metadata"]["name"] for p in pools} == {"triton-http", "triton-grpc"}
        for pool in pools:
            check_pool(pool)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "targetPorts"), []),
        (("spec", "targetPorts"), [{"number": 0}]),
        (("spec", "targetPorts"), [{"number": 8000}, {"number": 8000}]),
        (("spec", "appProtocol"), "grpc"),
        (("spec", "selector", "matchLabels"), {}),
        (("spec", "endpointPickerRef", "failureMode"), "FailSometimes"),
        (("spec", "endpointPickerRef", "port"), None),
        (("spec", "endpointPickerRef", "portt"), {"number": 9002}),
        (("spec", "selector"), None),
    ],
)
def test_the_schema_rejects(docs: dict[str, list[Manifest]], path: tuple[str, ...],
                            value: Any) -> None:  # fmt: skip
    pool = copy.deepcopy(_named(docs["dev"], "InferencePool", "triton-http"))
    parent = pool
    for key in path[:-1]:
        parent = parent[key]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        check_pool(pool)


def test_pools_point_at_the_picker_and_cover_every_architecture(
    docs: dict[str, list[Manifest]],
) -> None:
    for overlay, rendered in docs.items():
        svc = _named(rendered, "Service", "synergai-epp")
        dep = _named(rendered, "Deployment", "synergai-epp")
        svc_ports = {p["port"]: p for p in svc["spec"]["ports"]}
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        triton = [d for d in _kind(rendered, "Deployment") if "synergai.io/pool" in
                  d["spec"]["template"]["metadata"]["labels"]]  # fmt: skip
        archs = {d["spec"]["template"]["metadata"]["labels"]["synergai.io/arch"] for d in triton}
        assert len(archs) >= 3, overlay  # one pool spans heterogeneous hardware
        for pool in _kind(rendered, "InferencePool"):
            ref = pool["spec"]["endpointPickerRef"]
            assert ref["name"] == "synergai-epp" and ref["failureMode"] == "FailOpen"
            port = svc_ports[ref["port"]["number"]]
            assert port["appProtocol"] == "kubernetes.io/h2c"  # ext_proc is gRPC
            selector = pool["spec"]["selector"]["matchLabels"]
            for d in triton:
                labels = d["spec"]["template"]["metadata"]["labels"]
                assert selector.items() <= labels.items(), d["metadata"]["name"]
                container = d["spec"]["template"]["spec"]["containers"][0]
                container_ports = {p["containerPort"] for p in container["ports"]}
                assert {p["number"] for p in pool["spec"]["targetPorts"]} <= container_ports


def test_picker_probes_use_grpc_health(docs: dict[str, list[Manifest]]) -> None:
    c = _named(docs["dev"], "Deployment", "synergai-epp")["spec"]["template"]["spec"]
    container = c["containers"][0]
    assert container["args"][0] == "epp"
    assert container["readinessProbe"]["grpc"] == {"port": 9002, "service": "readiness"}
    assert container["livenessProbe"]["grpc"] == {"port": 9002, "service": "liveness"}
    env = {e["name"] for e in container["env"]}
    assert "REDIS_URL" in env  # one Redis view with the gateway replicas


def test_routes_reach_the_pools(docs: dict[str, list[Manifest]]) -> None:
    rendered = docs["dev"]
    gateway = _named(rendered, "Gateway", "synergai-inference")
    for kind, pool in (("HTTPRoute", "triton-http"), ("GRPCRoute", "triton-grpc")):
        route = next(_kind(rendered, kind))
        assert route["spec"]["parentRefs"][0]["name"] == gateway["metadata"]["name"]
        ref = route["spec"]["rules"][0]["backendRefs"][0]
        assert ref == {"group": "inference.networking.k8s.io", "kind": "InferencePool",
                       "name": pool}  # fmt: skip


def test_picker_config_loads_and_discovers_every_pool(
    docs: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    rendered = docs["edge-cloud"]
    cm = next(d for d in _kind(rendered, "ConfigMap")
              if d["metadata"]["name"].startswith("synergai-epp-config"))  # fmt: skip
    path = tmp_path / "gateway.yaml"
    doc = yaml.safe_load(cm["data"]["gateway.yaml"])
    doc["profiles"] = str(ROOT / "profiles")
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    settings = load_settings(path)
    assert settings.discovery.sources == ["kubernetes"] and not settings.workers
    assert settings.epp.port == 9002
    pools = {d["spec"]["template"]["metadata"]["labels"]["synergai.io/pool"]
             for d in _kind(rendered, "Deployment")
             if "synergai.io/pool" in d["spec"]["template"]["metadata"]["labels"]}  # fmt: skip
    assert pools <= set(settings.discovery.kubernetes.pools)


COMPOSE_BOOTSTRAP = ROOT / "docker" / "envoy" / "envoy.yaml"
COMPOSE_ARGS = ["--config", str(ROOT / "docker/gateway/compose.yaml"), "--epp", "epp:9002",
                "--listen-host", "0.0.0.0", "--listen-port", "10000"]  # fmt: skip


def test_compose_envoy_bootstrap_is_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.epp.bootstrap import main

    assert main(COMPOSE_ARGS) == 0
    assert COMPOSE_BOOTSTRAP.read_text(encoding="utf-8") == capsys.readouterr().out, (
        "docker/envoy/envoy.yaml is stale: python -m gateway.epp.bootstrap "
        + " ".join(COMPOSE_ARGS[2:])
        + " --config docker/gateway/compose.yaml"
    )


def test_envoy_accepts_the_compose_bootstrap() -> None:
    import subprocess

    from gateway.epp.envoy_process import find_envoy

    out = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(COMPOSE_BOOTSTRAP),
         "--disable-hot-restart", "-l", "error"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_envoy_profile(compose: dict[str, Any]) -> None:
    svcs = compose["services"]
    epp, envoy = svcs["epp"], svcs["envoy"]
    assert epp["profiles"] == ["envoy"] and envoy["profiles"] == ["envoy"]
    assert (
        epp["command"][0] == "epp"
        and epp["environment"]["REDIS_URL"] == (svcs["gateway"]["environment"]["REDIS_URL"])
    )  # one Valkey view for gateway and picker
    assert any("docker/envoy/envoy.yaml" in v for v in envoy["volumes"])
    boot = yaml.safe_load(COMPOSE_BOOTSTRAP.read_text(encoding="utf-8"))
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    addr = clusters["epp"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert addr["address"]["socket_address"] == {"address": "epp", "port_value": 9002}
    assert clusters["triton_http"]["type"] == "STRICT_DNS"  # compose service names
