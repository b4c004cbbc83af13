"""Importing ``gateway`` turns gRPC's fork handlers off, so a ``fork`` beside gRPC threads
cannot wait on them (a ``Popen`` with ``preexec_fn`` hung in gRPC's atfork hook during
``make test``; gateway/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

_CHILD = """
import gateway, grpc, os, subprocess, sys, threading, time
print(os.environ["GRPC_ENABLE_FORK_SUPPORT"], flush=True)
channel = grpc.insecure_channel("127.0.0.1:1")  # a gRPC thread busy connecting
def busy():
    try:
        grpc.channel_ready_future(channel).result(timeout=3)
    except Exception:
        pass
threading.Thread(target=busy, daemon=True).start()
time.sleep(0.3)
for _ in range(3):  # preexec_fn: a real fork, which runs the atfork hooks
    subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None, check=True)
print("forked", flush=True)
"""


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=60
    )


def test_gateway_turns_grpc_fork_handlers_off() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    out = _run(env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "forked"]
    assert "fork() handlers" not in out.stderr  # gRPC's hook did not run


def test_an_explicit_setting_is_kept() -> None:
    out = _run(os.environ | {"GRPC_ENABLE_FORK_SUPPORT": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "1"
