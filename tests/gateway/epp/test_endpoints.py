"""Worker endpoints as Envoy names its hosts: IP literals kept, hostnames resolved."""

from __future__ import annotations

from gateway.epp.endpoints import endpoint_of, is_ip
from gateway.routing.types import WorkerInfo


def _worker(url: str, grpc_url: str = "") -> WorkerInfo:
    return WorkerInfo(id="w", pool="p", arch="a", models=("m",), url=url, grpc_url=grpc_url)


def test_ip_literals_pass_through() -> None:
    w = _worker("http://10.1.2.3:8000", "10.1.2.3:8001")
    assert endpoint_of(w, False) == "10.1.2.3:8000"
    assert endpoint_of(w, True) == "10.1.2.3:8001"
    assert endpoint_of(_worker("http://[fd00::5]:8000"), False) == "[fd00::5]:8000"


def test_hostnames_are_resolved() -> None:
    assert endpoint_of(_worker("http://localhost:8000"), False) in {"127.0.0.1:8000", "[::1]:8000"}


def test_is_ip() -> None:
    assert is_ip("127.0.0.1") and is_ip("[::1]") and not is_ip("triton-edge-nx")
