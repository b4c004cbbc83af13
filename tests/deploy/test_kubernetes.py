"""The kustomizations render with a real kustomize, validate against Kubernetes schemas, and hold.

Rendering uses the real binary (see ``conftest.find_kustomize``); validation uses
``kubernetes-validate`` offline, in strict mode (unknown fields are errors), against the
Kubernetes version below.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

Manifest = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"  # the oldest minor we support; newer schemas accept these objects too
POOL_LABEL = "synergai.io/pool"
ARCH_LABEL = "synergai.io/arch"
OVERLAYS = ["dev", "edge-cloud", "edge-cloud+external-redis"]


def by_kind(docs: list[Manifest], kind: str) -> Iterator[Manifest]:
    """The objects of ``kind`` among ``docs``."""
    return (d for d in docs if d.get("kind") == kind)


def named(docs: list[Manifest], kind: str, name: str) -> Manifest:
    """The one object of ``kind`` called ``name``."""
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pools(docs: list[Manifest]) -> list[Manifest]:
    """The Triton pool Deployments."""
    return [d for d in by_kind(docs, "Deployment") if POOL_LABEL in d["metadata"]["labels"]]


def test_every_kustomization_renders(rendered: dict[str, list[Manifest]]) -> None:
    for name, docs in rendered.items():
        assert docs, f"{name} rendered nothing"


@pytest.fixture
def cached_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse each schema file once: kubernetes-validate re-reads its multi-MB definitions per call.

    Pure speed-up (the parsed schemas are not mutated); without the hook validation is the same.
    """
    utils = kubernetes_validate.utils
    if hasattr(utils, "schema_contents"):
        monkeypatch.setattr(utils, "schema_contents", functools.cache(utils.schema_contents))


@pytest.mark.usefixtures("cached_schemas")
@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.latest_version()])
def test_rendered_manifests_validate_against_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], version: str
) -> None:
    errors = []
    seen: set[str] = set()
    for name, docs in rendered.items():
        for doc in docs:
            key = json.dumps(doc, sort_keys=True)
            if key in seen:  # the same object in several renders: validate it once
                continue
            seen.add(key)
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                errors.append(f"{name}: {doc['kind']}/{doc['metadata']['name']} {where}: {exc}")
    assert not errors, "\n".join(errors)


def test_validator_rejects_an_unknown_field() -> None:
    """Strict validation is on (a typo in a manifest would not pass silently)."""
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_gateway_is_highly_available_and_autoscaled(rendered: dict[str, list[Manifest]]) -> None:
    for name, docs in rendered.items():
        dep = named(docs, "Deployment", "synergai-gateway")
        assert dep["spec"]["replicas"] >= 2, name
        selector = dep["spec"]["selector"]["matchLabels"]
        pdb = named(docs, "PodDisruptionBudget", "synergai-gateway")
        assert pdb["spec"]["selector"]["matchLabels"] == selector, name
        hpa = named(docs, "HorizontalPodAutoscaler", "synergai-gateway")
        assert hpa["spec"]["minReplicas"] >= 2, name
        kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
        assert kinds["Resource"]["resource"]["name"] == "cpu", name
        custom = kinds.get("External") or kinds.get("Pods")
        assert custom is not None, f"{name}: no custom (in-flight) metric on the HPA"
        assert "inflight" in (custom.get("external") or custom.get("pods"))["metric"]["name"]


def test_gateway_service_exposes_rest_and_grpc(rendered: dict[str, list[Manifest]]) -> None:
    for name, docs in rendered.items():
        svc = named(docs, "Service", "synergai-gateway")
        ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
        assert ports == {"http": 8080, "grpc": 8081}, name


def test_gateway_can_read_endpointslices(rendered: dict[str, list[Manifest]]) -> None:
    for name, docs in rendered.items():
        dep = named(docs, "Deployment", "synergai-gateway")
        account = dep["spec"]["template"]["spec"]["serviceAccountName"]
        named(docs, "ServiceAccount", account)
        bindings = [
            b
            for b in by_kind(docs, "RoleBinding")
            if any(s["name"] == account for s in b["subjects"])
        ]
        assert bindings, f"{name}: no RoleBinding for {account}"
        role = named(docs, "Role", bindings[0]["roleRef"]["name"])
        assert any(
            "discovery.k8s.io" in r["apiGroups"]
            and "endpointslices" in r["resources"]
            and {"list", "watch"} <= set(r["verbs"])
            for r in role["rules"]
        ), name


def test_shared_state_is_configured(rendered: dict[str, list[Manifest]]) -> None:
    for name, docs in rendered.items():
        dep = named(docs, "Deployment", "synergai-gateway")
        env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        ref = env["REDIS_URL"]["valueFrom"]["secretKeyRef"]
        in_cluster = list(by_kind(docs, "StatefulSet"))
        secrets = [s["metadata"]["name"] for s in by_kind(docs, "Secret")]
        if in_cluster:
            assert ref["name"] in secrets, f"{name}: REDIS_URL secret {ref['name']} not rendered"
        else:  # external Redis: the operator creates the secret
            assert name.endswith("external-redis"), f"{name}: no Valkey and no external Redis"


def test_every_container_has_probes_and_resources(rendered: dict[str, list[Manifest]]) -> None:
    problems = []
    for name, docs in rendered.items():
        workloads = [*by_kind(docs, "Deployment"), *by_kind(docs, "StatefulSet")]
        for obj in workloads:
            for c in obj["spec"]["template"]["spec"]["containers"]:
                where = f"{name}: {obj['metadata']['name']}/{c['name']}"
                if "readinessProbe" not in c or "livenessProbe" not in c:
                    problems.append(f"{where}: missing readiness or liveness probe")
                res = c.get("resources", {})
                if not {"cpu", "memory"} <= set(res.get("requests", {})) or not {
                    "cpu",
                    "memory",
                } <= set(res.get("limits", {})):
                    problems.append(f"{where}: missing cpu/memory requests or limits")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", ["base", "edge-cloud"])
def test_pools_pin_architecture_and_pool_nodes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    docs = rendered[overlay]
    found = pools(docs)
    assert len(found) >= 3, f"{overlay}: fewer than three pools"
    for dep in found:
        labels = dep["metadata"]["labels"]
        pool, arch = labels[POOL_LABEL], labels[ARCH_LABEL]
        spec = dep["spec"]["template"]["spec"]
        assert dep["spec"]["template"]["metadata"]["labels"][POOL_LABEL] == pool
        assert dep["spec"]["template"]["metadata"]["labels"][ARCH_LABEL] == arch
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        exprs = {e["key"]: e["values"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}
        assert exprs["kubernetes.io/arch"] and set(exprs["kubernetes.io/arch"]) <= {
            "amd64",
            "arm64",
        }
        assert exprs[POOL_LABEL] == [pool]
        c = spec["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        # The pool Service (and so its EndpointSlices) carries the same labels for discovery.
        svc = named(docs, "Service", dep["metadata"]["name"])
        assert svc["metadata"]["labels"][POOL_LABEL] == pool
        assert svc["metadata"]["labels"][ARCH_LABEL] == arch


def test_edge_pools_are_arm64_and_real_pools_use_triton(
    rendered: dict[str, list[Manifest]],
) -> None:
    for dep in pools(rendered["edge-cloud"]):
        spec = dep["spec"]["template"]["spec"]
        image = spec["containers"][0]["image"]
        assert image.startswith("nvcr.io/nvidia/tritonserver:"), image
        arch = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        values = arch["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
        if dep["metadata"]["labels"][POOL_LABEL].startswith("edge"):
            assert values == ["arm64"] and image.endswith("-igpu")
        assert any(v["name"] == "models" for v in spec["volumes"])


def test_dev_runs_on_one_node_with_emulated_workers(
    rendered: dict[str, list[Manifest]],
) -> None:
    docs = rendered["dev"]
    for dep in pools(docs):
        spec = dep["spec"]["template"]["spec"]
        assert "affinity" not in spec, dep["metadata"]["name"]
        assert dep["spec"]["replicas"] == 1
        assert spec["containers"][0]["image"].startswith("synergai/triton-emulated-worker:")


def test_profiles_configmap_is_up_to_date() -> None:
    """``k8s/tools/profiles_configmap.py`` output equals the committed generated files."""
    import importlib.util

    path = ROOT / "k8s" / "tools" / "profiles_configmap.py"
    spec = importlib.util.spec_from_file_location("profiles_configmap", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for target, text in module.render().items():
        assert target.read_text(encoding="utf-8") == text, (
            f"{target.relative_to(ROOT)} is stale: run python k8s/tools/profiles_configmap.py"
        )


def test_profiles_configmap_round_trips(rendered: dict[str, list[Manifest]]) -> None:
    cm = named(rendered["base"], "ConfigMap", "synergai-profiles")
    dep = named(rendered["base"], "Deployment", "synergai-gateway")
    volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "profiles")
    items = {i["key"]: i["path"] for i in volume["configMap"]["items"]}
    expected = {
        p.relative_to(ROOT / "profiles").as_posix()
        for p in (ROOT / "profiles").rglob("*.yaml")
        if p.parent == ROOT / "profiles" or p.parent.parent == ROOT / "profiles"
    }
    assert set(items.values()) == expected
    for key, rel in items.items():
        text = (ROOT / "profiles" / rel).read_text(encoding="utf-8")
        assert cm["data"][key] == text.rstrip("\n"), rel
