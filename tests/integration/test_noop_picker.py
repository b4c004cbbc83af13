"""The no-op picker of ``bench overhead`` behind a real Envoy (FailClose: it must answer)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.core.net import free_port
from gateway.epp.envoy_config import EnvoyLayout
from gateway.epp.envoy_process import EnvoyProcess
from loadtest.noop_picker import NoopPicker
from workers import reaper

pytestmark = pytest.mark.integration


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("transport", ["h2", "grpcio"])
def test_envoy_forwards_through_the_noop_picker(
    upstream: str, tmp_path: Path, transport: str
) -> None:
    with NoopPicker(free_port(), transport) as noop:
        pid = noop.pid
        layout = EnvoyLayout(
            listen_port=free_port(),
            admin_port=free_port(),
            http_endpoints=[upstream],
            epp=noop.address,
            fail_open=False,
        )
        with EnvoyProcess(layout, tmp_path) as envoy:
            with httpx.Client(timeout=10) as http:
                for _ in range(5):
                    resp = http.post(f"{envoy.url}/v2/models/m/infer", content=b"{}")
                    assert resp.status_code == 200  # FailClose: a silent picker would be a 503
                    assert "x-synergai-worker" not in resp.headers  # nothing picked
            stats = envoy.stats("cluster.epp.upstream_rq")
            assert stats.get("cluster.epp.upstream_rq_total", 0) >= 5  # one stream per request
    assert pid is not None and reaper.is_gone(pid)
