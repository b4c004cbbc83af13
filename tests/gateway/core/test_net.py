"""free_port: outside the kernel's ephemeral range, bindable, not handed out twice."""

from __future__ import annotations

import socket

import pytest

from gateway.core import net


def test_free_ports_are_below_the_ephemeral_range_bindable_and_distinct() -> None:
    low = net._ephemeral_low()
    if low is None:
        pytest.skip("no ip_local_port_range here")
    ports = [net.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(net._LOWEST <= p < low for p in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports[-1]))  # free, as promised


def test_a_taken_port_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        draws = iter([taken, taken])
        monkeypatch.setattr(net._rng, "randrange", lambda a, b: next(draws, a + 1))
        monkeypatch.setattr(net, "_ephemeral_low", lambda: 65000)
        assert net.free_port() != taken


def test_without_the_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net, "_ephemeral_low", lambda: None)
    port = net.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
