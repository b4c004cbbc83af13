"""Compiled and pure-Python modules simulate identically (and the fingerprint tool works)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import native
from loadtest.sim.fingerprint import fingerprints, main

ROOT = Path(__file__).resolve().parents[3]
SCEN = ROOT / "loadtest" / "scenarios"
CASES = [
    (
        "demo.yaml",
        None,
        ["synergai", "profile_static", "round_robin", "p2c", "peak_ewma", "oracle"],
    ),
    ("drift-crash.yaml", 22.0, ["synergai", "profile_static", "least_outstanding"]),
]


def _pure(name: str, until: float | None, policies: list[str]) -> dict[str, str]:
    args = [str(SCEN / name)] + [x for p in policies for x in ("--policy", p)]
    if until is not None:
        args += ["--until", str(until)]
    env = {**os.environ, native.ENV: "0", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "loadtest.sim.fingerprint", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    doc: dict[str, dict[str, str]] = json.loads(out.stdout)
    return doc[Path(name).stem]


@pytest.mark.skipif(not native.status()["active"], reason="no fresh native build")
@pytest.mark.parametrize(("name", "until", "policies"), CASES)
def test_compiled_equals_pure_python(name: str, until: float | None, policies: list[str]) -> None:
    compiled = fingerprints(SCEN / name, policies, until)
    assert compiled == _pure(name, until, policies)


def test_fingerprint_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SCEN / "demo.yaml"), "--policy", "round_robin", "--until", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["demo"] and len(doc["demo"]["round_robin"]) == 16
    assert main([]) == 2
