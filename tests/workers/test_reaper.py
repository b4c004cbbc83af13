from __future__ import annotations

import mmap
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from workers import reaper


def test_wait_gone_and_is_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ps = psutil.Process(proc.pid)
        assert reaper.wait_gone([ps], timeout=0.05) == [ps]
        assert not reaper.is_gone(proc.pid)
        proc.kill()
        assert reaper.wait_gone([ps], timeout=5) == []  # a zombie counts as gone
        assert reaper.is_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert reaper.is_gone(proc.pid)


def test_shm_segments_lists_mapped_dev_shm_files() -> None:
    path = Path("/dev/shm") / f"synergai-test-{uuid.uuid4().hex}"
    path.write_bytes(b"\0" * 4096)
    try:
        with open(path, "r+b") as fh, mmap.mmap(fh.fileno(), 4096):
            found = reaper.shm_segments([psutil.Process(os.getpid())])
            assert path in found
        reaper.remove_shm({path, path.with_name("absent")})
        assert not path.exists()
    finally:
        path.unlink(missing_ok=True)


def test_registry() -> None:
    reaper.register(999_999_999, "fake")
    assert reaper.live_pids()[999_999_999] == "fake"
    reaper.unregister(999_999_999)
    assert 999_999_999 not in reaper.live_pids()
