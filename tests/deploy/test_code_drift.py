"""One test that reads the deploy files and the gateway code together, so they cannot drift.

It checks, against the code as it is (not against copies of names):

* environment: every ``SYNERGAI_*`` variable given to a gateway container (Dockerfile, compose,
  every rendered Kubernetes overlay) is a field of ``gateway.settings.Settings`` (or the
  ``SYNERGAI_CONFIG`` that ``load_settings`` reads), ``REDIS_URL`` is the Redis alias, and the
  whole environment plus the mounted config file load through ``load_settings``;
* config files: every gateway config we ship validates strictly, names a registered policy, and
  every worker's (arch, model) has a profile; emulated pools serve what the config says;
* ports: the Settings defaults (REST 8080, gRPC 8081) are what the Dockerfile exposes, compose
  publishes, the Kubernetes containers and Service declare, the healthchecks and Prometheus hit;
* routes: the probe paths (``/v2/health/ready``, ``/v2/health/live``, ``/metrics``) are served by
  ``gateway/api``;
* metrics: every ``synergai_*`` series in the Grafana dashboard, the Prometheus-adapter rules and
  the docs is exported by ``gateway.observability.metrics.GatewayMetrics``, with the labels the
  queries group by.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

Manifest = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
REST_PORT, GRPC_PORT = 8080, 8081
COMPOSE_CONFIGS = ["docker/gateway/compose.yaml", "docker/gateway/compose-gpu.yaml"]
K8S_CONFIGS = {
    "base": "k8s/base/gateway/gateway.yaml",
    "dev": "k8s/overlays/dev/gateway.yaml",
    "edge-cloud": "k8s/overlays/edge-cloud/gateway.yaml",
}
PROBE_PATHS = ["/v2/health/ready", "/v2/health/live", "/metrics"]
# Labels Prometheus adds or histograms carry; a query may group by them on any series.
TARGET_LABELS = {"le", "instance", "job", "namespace", "pod"}
METRIC = re.compile(r"\b(synergai_[a-z0-9_]+)")
DEFAULTED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")
BY = re.compile(r"\bby\s*\(([^)]*)\)")


def _exported_metrics() -> dict[str, set[str]]:
    """Series name -> label names, for every series GatewayMetrics can export."""
    metrics_mod = pytest.importorskip(
        "gateway.observability.metrics", reason="gateway/observability/metrics.py not landed yet"
    )
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "gauge": [""],
        "summary": ["_sum", "_count", ""],
    }
    registry = metrics_mod.GatewayMetrics().registry
    series: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):  # every metric, even without samples
        for family in collector.describe():
            labels = set(getattr(collector, "_labelnames", ()))
            for suffix in suffixes.get(family.type, [""]):
                series[family.name + suffix] = labels
            if family.type == "histogram":
                series[family.name + "_bucket"] = labels | {"le"}
    return series


def _module_constant(path: str, name: str) -> float:
    """A numeric module-level constant of a source file (read, not imported: no heavy imports)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == name:
            constant = ast.literal_eval(value)
            assert isinstance(constant, int | float), f"{path}: {name} is not a number"
            return float(constant)
    return 0.0


def _gateway_envs(compose: dict[str, Any], rendered: dict[str, list[Manifest]]) -> dict[str, Any]:
    """Where -> {name: literal value or None (from a secret)} of every gateway container."""
    envs: dict[str, dict[str, str | None]] = {}
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    envs["Dockerfile"] = dict(re.findall(r"\b(SYNERGAI_\w+|REDIS_URL)=(\S+)", final))
    envs["compose"] = {k: str(v) for k, v in compose["services"]["gateway"]["environment"].items()}
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "synergai-gateway":
                container = doc["spec"]["template"]["spec"]["containers"][0]
                envs[f"k8s {overlay}"] = {e["name"]: e.get("value") for e in container["env"]}
    return envs


def _dashboard_exprs() -> dict[str, str]:
    """Where -> PromQL, from the Grafana dashboard and the Prometheus-adapter rules."""
    exprs: dict[str, str] = {}
    dash = json.loads((ROOT / "docker/grafana/dashboards/synergai.json").read_text("utf-8"))
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            exprs[f"dashboard '{panel['title']}' {target['refId']}"] = target["expr"]
    for var in dash.get("templating", {}).get("list", []):
        exprs[f"dashboard variable {var['name']}"] = var.get("definition", "")
    adapter = yaml.safe_load((ROOT / "k8s/extras/prometheus-adapter-values.yaml").read_text())
    for i, rule in enumerate(adapter["rules"]["external"]):
        exprs[f"prometheus-adapter rule {i}"] = rule["seriesQuery"] + " " + rule["metricsQuery"]
    return exprs


def test_deploy_files_match_the_code(
    compose: dict[str, Any],
    rendered: dict[str, list[Manifest]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings_mod = pytest.importorskip(
        "gateway.settings", reason="gateway/settings.py not landed yet"
    )
    profiles_mod = pytest.importorskip("gateway.prediction.profiles")
    registry_mod = pytest.importorskip(
        "gateway.routing.registry", reason="gateway/routing/registry.py not landed yet"
    )
    Settings, load_settings = settings_mod.Settings, settings_mod.load_settings
    errors: list[str] = []
    book = profiles_mod.load_profiles(ROOT / "profiles")
    policies = set(registry_mod.policy_names())

    # --- environment -> Settings ---
    fields = {name.upper() for name in Settings.model_fields}
    redis_alias = Settings.model_fields["redis_url"].validation_alias
    assert "REDIS_URL" in getattr(redis_alias, "choices", [redis_alias]), "REDIS_URL alias gone"
    assert "SYNERGAI_CONFIG" in inspect.getsource(load_settings), "SYNERGAI_CONFIG not read"
    envs = _gateway_envs(compose, rendered)
    assert {"Dockerfile", "compose", "k8s base", "k8s dev", "k8s edge-cloud"} <= set(envs)
    for where, env in envs.items():
        for name in env:
            if name == "REDIS_URL" or name == "SYNERGAI_CONFIG":
                continue
            if not name.startswith("SYNERGAI_") or name.removeprefix("SYNERGAI_") not in fields:
                errors.append(f"{where}: {name} is not a gateway setting")

    # --- every shipped config (with that deployment's environment) loads as the gateway would ---
    configs = {f"compose {c}": (c, envs["compose"]) for c in COMPOSE_CONFIGS}
    configs |= {f"k8s {o}": (c, envs[f"k8s {o}"]) for o, c in K8S_CONFIGS.items()}
    loaded = {}
    for where, (path, env) in configs.items():
        with monkeypatch.context() as m:
            for name in [n for n in os.environ if n.startswith("SYNERGAI_")]:
                m.delenv(name)
            for name, value in env.items():
                m.setenv(name, value if value is not None else "redis://secret:6379/0")
            m.delenv("SYNERGAI_CONFIG", raising=False)
            try:
                settings = load_settings(ROOT / path)
            except Exception as exc:  # report every file, not just the first
                errors.append(f"{where}: {path} does not load: {exc}")
                continue
        loaded[where] = settings
        if settings.policy not in policies:
            errors.append(f"{where}: policy {settings.policy!r} is not registered")
        if (settings.port, settings.grpc_port) != (REST_PORT, GRPC_PORT):
            errors.append(f"{where}: ports {settings.port}/{settings.grpc_port}")
        if not settings.workers:
            errors.append(f"{where}: no workers (synergai serve refuses to start)")
        for w in settings.workers:
            errors += [
                f"{where}: worker {w.id}: no profile for {w.arch}/{m}"
                for m in w.models
                if book.get(w.arch, m) is None
            ]
            errors += [
                f"{where}: model {m} has no defaults" for m in w.models if m not in settings.models
            ]
    defaults = Settings.model_fields
    if (defaults["port"].default, defaults["grpc_port"].default) != (REST_PORT, GRPC_PORT):
        errors.append("Settings default ports are no longer 8080/8081: update every deploy file")

    # --- compose: emulated pools serve what the gateway config says; Prometheus scrapes them ---
    services = compose["services"]
    prometheus = (ROOT / "docker/prometheus/prometheus.yml").read_text(encoding="utf-8")
    for w in loaded["compose docker/gateway/compose-gpu.yaml"].workers:
        host = re.sub(r"^https?://", "", w.url).split(":")[0]
        svc = services.get(host)
        if svc is None:
            errors.append(f"compose config worker {w.id}: no compose service {host!r}")
            continue
        label = DEFAULTED.sub(r"\1", svc["labels"]["synergai.io/arch"])
        if label != w.arch:
            errors.append(f"compose worker {w.id}: arch {w.arch} != service label")
        env = svc.get("environment", {})
        if "SYNERGAI_MODELS" in env:
            if env["SYNERGAI_MODELS"].split(",") != list(w.models):
                errors.append(f"compose worker {w.id}: models differ from SYNERGAI_MODELS")
            if int(env["SYNERGAI_INSTANCES"]) != w.instances:
                errors.append(f"compose worker {w.id}: instances differ from SYNERGAI_INSTANCES")
        metrics_target = re.sub(r"^https?://", "", w.metrics_url).split("/")[0]
        if f'"{metrics_target}"' not in prometheus:
            errors.append(f"prometheus.yml does not scrape {metrics_target} ({w.id})")
    if f'"gateway:{REST_PORT}"' not in prometheus:
        errors.append("prometheus.yml does not scrape the gateway's REST port")

    # --- k8s: every config worker is a pool Service whose Deployment matches it ---
    for overlay in K8S_CONFIGS:
        docs = rendered[overlay]
        svcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
        for w in loaded[f"k8s {overlay}"].workers:
            host = re.sub(r"^https?://", "", w.url).split(":")[0]
            if host not in svcs or host not in deps:
                errors.append(f"k8s {overlay}: worker {w.id} -> no Service/Deployment {host}")
                continue
            if svcs[host]["metadata"]["labels"]["synergai.io/arch"] != w.arch:
                errors.append(f"k8s {overlay}: worker {w.id} arch differs from its Service")
            pod_env = {
                e["name"]: e.get("value")
                for e in deps[host]["spec"]["template"]["spec"]["containers"][0].get("env", [])
            }
            if "SYNERGAI_INSTANCES" in pod_env:  # emulated: capacity is exact
                want = deps[host]["spec"]["replicas"] * int(pod_env["SYNERGAI_INSTANCES"])
                if w.instances != want:
                    errors.append(f"k8s {overlay}: {w.id} instances {w.instances} != {want}")
                if pod_env["SYNERGAI_MODELS"].split(",") != list(w.models):
                    errors.append(f"k8s {overlay}: {w.id} models differ from SYNERGAI_MODELS")

    # --- ports everywhere ---
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    if not re.search(rf"^EXPOSE\s+{REST_PORT}\s+{GRPC_PORT}\b", dockerfile, re.M):
        errors.append("Dockerfile does not EXPOSE the REST and gRPC ports")
    for where, text in {
        "Dockerfile HEALTHCHECK": dockerfile,
        "compose gateway healthcheck": " ".join(services["gateway"]["healthcheck"]["test"]),
    }.items():
        if f"127.0.0.1:{REST_PORT}/v2/health/ready" not in text:
            errors.append(f"{where} does not probe :{REST_PORT}/v2/health/ready")
    published = {str(p).rsplit(":", 1)[-1] for p in services["gateway"]["ports"]}
    if published != {str(REST_PORT), str(GRPC_PORT)}:
        errors.append(f"compose gateway publishes {published}")
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["metadata"]["name"] != "synergai-gateway":
                continue
            if doc["kind"] == "Deployment":
                spec = doc["spec"]["template"]["spec"]
                c = spec["containers"][0]
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                if ports != {"http": REST_PORT, "grpc": GRPC_PORT}:
                    errors.append(f"k8s {overlay}: gateway containerPorts {ports}")
                drain = _module_constant("gateway/server.py", "DRAIN_TIMEOUT_S")
                if spec["terminationGracePeriodSeconds"] < drain + 5:
                    errors.append(f"k8s {overlay}: grace period shorter than drain + preStop")
                annotations = doc["spec"]["template"]["metadata"]["annotations"]
                if annotations.get("prometheus.io/port") != str(REST_PORT):
                    errors.append(f"k8s {overlay}: metrics scrape port is not {REST_PORT}")

    # --- probe routes are served by the gateway ---
    api_source = "\n".join(p.read_text("utf-8") for p in (ROOT / "gateway/api").glob("*.py"))
    for path in PROBE_PATHS:
        if f'"{path}"' not in api_source:
            errors.append(f"gateway/api serves no route {path} (probes and healthchecks use it)")

    # --- metrics in dashboards / autoscaling / docs ---
    exported = _exported_metrics()
    for where, expr in _dashboard_exprs().items():
        used = set(METRIC.findall(expr))
        for name in used - set(exported):
            errors.append(f"{where}: {name} is not exported by GatewayMetrics")
        labels = {lab.strip() for grp in BY.findall(expr) for lab in grp.split(",") if lab.strip()}
        for name in used & set(exported):
            if missing := labels - exported[name] - TARGET_LABELS:
                errors.append(f"{where}: {name} has no label(s) {sorted(missing)}")
    # The HPA's metric is one the adapter derives from exported series; docs may name both.
    adapter = yaml.safe_load((ROOT / "k8s/extras/prometheus-adapter-values.yaml").read_text())
    derived = {rule["name"]["as"] for rule in adapter["rules"]["external"]}
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["kind"] == "HorizontalPodAutoscaler":
                external = [m["external"] for m in doc["spec"]["metrics"] if "external" in m]
                errors += [
                    f"k8s {overlay}: HPA metric {e['metric']['name']} has no adapter rule"
                    for e in external
                    if e["metric"]["name"] not in derived
                ]
    ops = ROOT / "docs" / "operations.md"
    if ops.is_file():
        for name in set(METRIC.findall(ops.read_text("utf-8"))) - set(exported) - derived:
            if not name.endswith("_"):
                errors.append(f"docs/operations.md names {name}, which is not exported")

    assert not errors, "deploy files drifted from the code:\n" + "\n".join(errors)
