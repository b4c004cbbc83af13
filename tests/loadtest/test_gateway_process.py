"""``GatewayProcess`` without servers: the command it runs and the environment it gets.

Real processes are started by the integration tests that use it (replicas, shutdown, overload,
bench; ``python -m loadtest.replicas overhead`` runs the in-process-store variant).
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

from loadtest.gateway_process import GatewayProcess, StackError
from workers.launcher import free_ports, http_get


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


_FAKE_GATEWAY = """
import http.server, sys
port, taken = int(sys.argv[1]), int(sys.argv[2])
if port == taken:
    print("ERROR: [Errno 98] error while attempting to bind on address: address already in use")
    sys.exit(1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


class _FakeGateway(GatewayProcess):
    """Exits with uvicorn's "address already in use" on the taken port, else answers 200."""

    taken = 0

    def command(self) -> list[str]:
        return [sys.executable, "-c", _FAKE_GATEWAY, str(self.port), str(self.taken)]


def test_a_port_taken_before_the_bind_is_retried_on_new_ports(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        gw = _FakeGateway(tmp_path / "gw.yaml", tmp_path)
        gw.taken = gw.port = s.getsockname()[1]  # another process won the race for it
        gw.start()
        try:
            gw.wait_ready(30)
            assert gw.port != gw.taken and gw.pid is not None
        finally:
            gw.kill()


def test_a_fixed_port_taken_is_an_error_not_a_silent_move(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        gw = _FakeGateway(tmp_path / "gw.yaml", tmp_path, port=port)
        gw.taken = port
        gw.start()
        with pytest.raises(StackError, match="address already in use"):
            gw.wait_ready(30)


def test_a_port_answered_by_something_else_reads_as_not_ready() -> None:
    """A listener that is not HTTP/1 (a gRPC server on a reused port) is "nothing answers"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        def garbage() -> None:
            conn, _ = s.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x7f\xff\xff\xff\r\n")

        t = threading.Thread(target=garbage, daemon=True)
        t.start()
        assert http_get(port, "/v2/health/ready", timeout=5.0) == (0, b"")
        t.join(5)


def test_free_ports_are_not_handed_out_twice_in_one_process() -> None:
    ports = [p for _ in range(100) for p in free_ports(2)]
    assert len(set(ports)) == len(ports)
