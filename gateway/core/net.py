"""Loopback port helpers for the embedded Valkey, the demo and tests.

A port found free can be taken before its owner binds it. The usual trick (bind port 0, read
the port, close) returns a port of the kernel's *ephemeral* range, the range every outgoing
connection's local port is drawn from too: on a busy machine a client socket of a parallel
test (or of the gateway itself, to Triton or Valkey) can take it within milliseconds, and
the server then fails with "address already in use" (seen in `make test`: 20 gRPC gateway
tests errored on one such port). :func:`free_port` therefore draws from *below* the
ephemeral range (``ip_local_port_range`` on Linux), where the kernel never hands out ports
on its own, checks that the port binds, and does not hand the same port out twice in one
process while it is recent. Without that range (another OS), it falls back to the kernel's
pick.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from pathlib import Path

__all__ = ["free_port"]

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
"""Lowest port drawn: below are well-known and registered services' usual ports."""
_TRIES = 64
_RECENT = 4096
"""Ports handed out recently by this process, not handed out again (bounded)."""

_recent: deque[int] = deque(maxlen=_RECENT)
_rng = random.Random()


def _ephemeral_low() -> int | None:
    """The kernel's lowest ephemeral port, or None when it cannot be read."""
    try:
        return int(_RANGE_FILE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _binds(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host``, outside the ephemeral range (module docstring).

    A race with another process binding the same port is still possible, only rare: callers
    that can retry on "address already in use" should.
    """
    low = _ephemeral_low()
    if low is not None and low - _LOWEST >= 1024:
        for _ in range(_TRIES):
            port = _rng.randrange(_LOWEST, low)
            if port not in _recent and _binds(host, port):
                _recent.append(port)
                return port
    port = 0
    for _ in range(_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _recent:
            break
    _recent.append(port)
    return port
