"""Every image reference is pinned, and the Dockerfiles are built the way the deploy files assume.

Pinned means an exact tag (not ``latest``, not a moving major like ``python:3``) or a digest.
Our own images are tagged with the project version from ``pyproject.toml``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

Manifest = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "Dockerfile", *sorted((ROOT / "docker").glob("*.Dockerfile"))]
OWN_IMAGES = ("synergai/",)
# Third-party tags must name one release: x.y.z (optionally v-prefixed, with a variant suffix),
# or NGC's YY.MM release tags (NGC never re-publishes a YY.MM tag with other content).
PRECISE_TAG = re.compile(r"^v?\d+\.\d+\.\d+([-.][A-Za-z0-9.-]+)?$")
NGC_TAG = re.compile(r"^\d{2}\.\d{2}-py3(-[a-z]+)?$")


def project_version() -> str:
    """``[project].version`` of pyproject.toml."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    version: str = data["project"]["version"]
    return version


def dockerfile_froms(path: Path) -> list[str]:
    """The base image of every stage of ``path``, ARG defaults substituted, stage names dropped."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^ARG\s+(\w+)=(\S+)", line):
            args.setdefault(m[1], m[2])
        elif m := re.match(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I):
            image = re.sub(r"\$\{?(\w+)\}?", lambda a: args.get(a[1], a[0]), m[1])
            if image not in stages:
                images.append(image)
            if m[2]:
                stages.add(m[2])
    return images


def unpinned(image: str) -> str | None:
    """Why ``image`` is not pinned, or None when it is."""
    if "$" in image:
        return "unresolved variable"
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return "no tag"
    if tag == "latest":
        return "latest"
    if image.startswith(OWN_IMAGES):
        return None if tag == project_version() else "tag is not the project version"
    if name.startswith("nvcr.io/") and NGC_TAG.match(tag):
        return None
    return None if PRECISE_TAG.match(tag) else f"tag {tag!r} is not an exact release"


def all_images(compose: dict[str, Any], rendered: dict[str, list[Manifest]]) -> dict[str, str]:
    """Image -> where it is used, across Dockerfiles, compose and every rendered manifest."""
    found: dict[str, str] = {}
    for path in DOCKERFILES:
        for image in dockerfile_froms(path):
            found[image] = str(path.relative_to(ROOT))
    for name, svc in compose["services"].items():
        if "image" in svc:
            found[svc["image"]] = f"docker-compose.yml:{name}"
    for overlay, docs in rendered.items():
        for doc in docs:
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                found[c["image"]] = f"k8s {overlay}: {doc['metadata']['name']}"
    return found


def test_every_image_is_pinned(
    compose: dict[str, Any], rendered: dict[str, list[Manifest]]
) -> None:
    images = all_images(compose, rendered)
    bad = [f"{img} ({where}): {why}" for img, where in images.items() if (why := unpinned(img))]
    assert not bad, "unpinned images:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("python:3.11.13-slim-bookworm", True),
        ("python:3.11-slim", False),
        ("valkey/valkey:8.0.2-alpine", True),
        ("synergai/gateway:0.0.0-dev", False),
        ("python:3", False),
        ("valkey/valkey", False),
        ("grafana/grafana:latest", False),
        ("localhost:5000/x", False),
        ("prom/prometheus@sha256:" + "0" * 64, True),
        ("nvcr.io/nvidia/tritonserver:24.10-py3", True),
        ("nvcr.io/nvidia/tritonserver:24.10-py3-igpu", True),
        ("docker.io/library/tritonserver:24.10-py3", False),
    ],
)
def test_pin_rule(image: str, pinned: bool) -> None:
    assert (unpinned(image) is None) is pinned


def test_gateway_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "the gateway image is built in stages"
    base = dockerfile_froms(ROOT / "Dockerfile")
    assert base and all(re.match(r"^python:3\.11\.\d+-slim", b) for b in base), base
    final = text[text.rindex("\nFROM ") :]
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "runs as root"
    assert re.search(r"^HEALTHCHECK\b[\s\S]*?/v2/health/ready", final, re.M)
    assert re.search(r"^EXPOSE\s+8080\s+8081\b", final, re.M)


def test_worker_dockerfile_bakes_the_emulation_repository() -> None:
    path = ROOT / "docker" / "worker.Dockerfile"
    text = path.read_text(encoding="utf-8")
    final_base = dockerfile_froms(path)[-1]
    assert re.match(r"^nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3$", final_base), final_base
    assert "workers/" in text and "bake_repositories.py" in text
    assert re.search(r"^COPY --from=\S+ /models /models", text, re.M)
    assert "/v2/health/ready" in text
    entry = (ROOT / "docker" / "worker" / "entrypoint.sh").read_text(encoding="utf-8")
    # The entrypoint enforces the pool's shared slot limit like workers/launcher.py does.
    assert "--rate-limit=execution_count" in entry and "SLOT:" in entry
