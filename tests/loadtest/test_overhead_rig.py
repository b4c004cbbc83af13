"""``loadtest.overhead_rig`` without servers: the nginx config and the gateway config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from loadtest.overhead_rig import MODEL, Nginx, write_overhead_config


def test_nginx_config_is_least_conn_to_upstream(tmp_path: Path) -> None:
    n = Nginx("/usr/sbin/nginx", 12345, tmp_path)
    conf = n.conf.read_text()
    assert "least_conn;" in conf
    assert "server 127.0.0.1:12345;" in conf
    assert f"listen 127.0.0.1:{n.port}" in conf
    assert "worker_processes 1;" in conf
    assert "daemon off;" in conf


def test_overhead_config_points_the_gateway_at_the_server(tmp_path: Path) -> None:
    server = SimpleNamespace(
        http_url="http://127.0.0.1:1", grpc_url="127.0.0.1:2", metrics_url="http://127.0.0.1:3"
    )
    doc = yaml.safe_load(write_overhead_config(tmp_path, server).read_text())
    (worker,) = doc["workers"]
    assert worker["url"] == "http://127.0.0.1:1" and worker["models"] == [MODEL]
    assert Path(doc["profiles"], worker["arch"], f"{MODEL}.yaml").is_file()
