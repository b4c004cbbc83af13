"""The compose stack: valid against the Compose Specification, ordered by healthchecks, complete.

The schema is the Compose Specification's own ``schema/compose-spec.json`` (vendored beside this
file, see README.md), which is what ``docker compose config`` validates against; no Docker
engine or compose plugin is needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")

# Leaf services nothing waits for; everything else must report health.
NO_HEALTHCHECK = {"locust-worker"}
TRITON_PREFIX = "triton-"
DEFAULTED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``services`` mapping."""
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert not errors, "docker-compose.yml is not a valid compose file:\n" + "\n".join(errors)


def test_schema_rejects_a_broken_compose_file() -> None:
    """The vendored schema is strict enough to catch a typo (guards against a no-op schema)."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = {"services": {"x": {"image": "a:1", "restart_policy": "always"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    missing = [
        name
        for name, svc in services(compose).items()
        if name not in NO_HEALTHCHECK and not svc.get("healthcheck", {}).get("test")
    ]
    assert not missing, f"services without a healthcheck: {missing}"


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    problems = []
    for name, svc in svcs.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with a condition"
        for dep, spec in deps.items():
            if dep not in svcs:
                problems.append(f"{name} -> {dep}: no such service")
            elif spec.get("condition") != "service_healthy":
                problems.append(f"{name} -> {dep}: condition is not service_healthy")
            elif "healthcheck" not in svcs[dep]:
                problems.append(f"{name} -> {dep}: {dep} has no healthcheck")
            elif "profiles" in svcs[dep] and spec.get("required", True):
                problems.append(
                    f"{name} -> {dep}: optional (profiled) service must be required: false"
                )
    assert not problems, "\n".join(problems)


def test_gateway_waits_for_state_and_every_default_pool(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    deps = set(svcs["gateway"]["depends_on"])
    pools = {n for n, s in svcs.items() if n.startswith(TRITON_PREFIX) and "profiles" not in s}
    assert len(pools) >= 3, f"the demo needs three or more Triton pools, has {sorted(pools)}"
    assert {"valkey", *pools} <= deps


def test_triton_pools_carry_pool_and_arch_labels(compose: dict[str, Any]) -> None:
    archs = {p.name for p in (ROOT / "profiles").iterdir() if p.is_dir()}
    pools: dict[str, str] = {}
    for name, svc in services(compose).items():
        if not name.startswith(TRITON_PREFIX):
            continue
        labels = svc.get("labels", {})
        assert {"synergai.io/pool", "synergai.io/arch"} <= set(labels), name
        pools[labels["synergai.io/pool"]] = name
        env = svc.get("environment", {})
        if "SYNERGAI_ARCH" in env:  # emulated: the label tells the truth about the profile used
            assert env["SYNERGAI_ARCH"] == labels["synergai.io/arch"], name
            assert env["SYNERGAI_ARCH"] in archs, f"{name}: no profiles/{env['SYNERGAI_ARCH']}"
    assert len(pools) == len([n for n in services(compose) if n.startswith(TRITON_PREFIX)])


def test_gpu_profile_switches_a_pool_to_real_models(compose: dict[str, Any]) -> None:
    gpu = [s for s in services(compose).values() if "gpu" in s.get("profiles", [])]
    assert gpu, "no service in the `gpu` compose profile"
    for svc in gpu:
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d.get("capabilities", []) for d in devices)


def test_observability_and_load_services_exist(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    assert {"prometheus", "grafana", "locust-master", "locust-worker", "valkey"} <= set(svcs)
    master = " ".join(svcs["locust-master"]["command"])
    assert "loadtest/locustfile.py" in master and "--master" in master
    assert "http://gateway:8080" in master
    worker = " ".join(svcs["locust-worker"]["command"])
    assert "--worker" in worker and "locust-master" in worker
    assert (ROOT / "loadtest" / "locustfile.py").is_file()


def test_build_contexts_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    missing = []
    for name, svc in services(compose).items():
        build = svc.get("build")
        if build:
            context = ROOT / build.get("context", ".")
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                missing.append(f"{name}: {build}")
        for volume in svc.get("volumes", []):
            # ${VAR:-default} interpolation: check the default.
            source = DEFAULTED.sub(r"\1", str(volume)).split(":", 1)[0]
            if source.startswith(".") and not (ROOT / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"missing build files or bind-mount sources: {missing}"
