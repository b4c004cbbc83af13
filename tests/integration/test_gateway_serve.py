"""``synergai serve`` as a real process: config file, embedded Valkey, SIGTERM, reaping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.core.net import free_port

pytestmark = pytest.mark.integration


def test_serve_bad_config_exits_2_naming_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("policy: round_robin\nworkerz: []\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert f"{cfg}:2: workerz: unknown key" in out.stderr


def test_serve_starts_embedded_valkey_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        "policy: least_outstanding\n"
        "workers:\n"
        "  - {id: w0, pool: p, arch: nvidia-a100, url: 'http://127.0.0.1:9', models: [resnet50]}\n"
    )
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SYNERGAI_") and k != "REDIS_URL"
    }
    env["SYNERGAI_HOST"] = "127.0.0.1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg),
         "--port", str(port), "--grpc-port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/live").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("valkey" in c.name() for c in children), [c.name() for c in children]
        # the only worker is unreachable: not ready, and infer says so cleanly
        time.sleep(1.5)
        assert httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 503
        body = b'{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32","data":[1]}]}'
        r = httpx.post(f"http://127.0.0.1:{port}/v2/models/resnet50/infer", content=body)
        assert r.status_code in (502, 503) and "error" in r.json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
