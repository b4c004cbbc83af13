"""``GatewayProcess`` without servers: the command it runs and the environment it gets.

Real processes are started by the integration tests that use it (replicas, shutdown, overload,
bench; ``python -m loadtest.replicas overhead`` runs the in-process-store variant).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loadtest.gateway_process import GatewayProcess


def test_serve_command_and_hermetic_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNERGAI_POLICY", "random")  # the caller's shell must not leak in
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    monkeypatch.setenv("HOME_OF_SOMETHING", "kept")
    gw = GatewayProcess(
        tmp_path / "gw.yaml",
        tmp_path,
        policy="p2c",
        redis_url="redis://127.0.0.1:1/0",
        seed=7,
        env={"SYNERGAI_UPSTREAM": "aiohttp"},
        name="x",
    )
    cmd = gw.command()
    assert cmd[:4] == [sys.executable, "-m", "gateway.cli", "serve"]
    assert cmd[cmd.index("--port") + 1] == str(gw.port)
    assert cmd[cmd.index("--grpc-port") + 1] == str(gw.grpc_port) != str(gw.port)
    env = gw.environment()
    assert env["SYNERGAI_POLICY"] == "p2c" and env["SYNERGAI_SEED"] == "7"
    assert env["REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert env["SYNERGAI_UPSTREAM"] == "aiohttp" and env["HOME_OF_SOMETHING"] == "kept"
    assert gw.log_path == tmp_path / "gateway-x.log"
    assert gw.url == f"http://127.0.0.1:{gw.port}"


def test_defaults_keep_the_config_policy_and_embed_valkey(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNERGAI_POLICY", "random")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    env = GatewayProcess(tmp_path / "gw.yaml", tmp_path).environment()
    assert "SYNERGAI_POLICY" not in env and "REDIS_URL" not in env


def test_memory_store_runs_the_in_process_store_entry(tmp_path: Path) -> None:
    cmd = GatewayProcess(tmp_path / "gw.yaml", tmp_path, store="memory").command()
    assert cmd[2:4] == ["loadtest.gateway_process", "serve-memory"]
    assert "--config" in cmd and "--port" in cmd
