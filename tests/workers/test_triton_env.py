from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from workers.triton_env import TritonInstall, find_triton


def test_env_puts_libdir_then_wheel_libs_and_venv_bin_first() -> None:
    inst = TritonInstall(
        Path("/x/tritonserver"), Path("/x/backends"), Path("/x/libs"), Path("/venv/bin/python")
    )
    env = inst.env({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/old"})
    ld = env["LD_LIBRARY_PATH"].split(":")
    assert ld == [sysconfig.get_config_var("LIBDIR"), "/x/libs", "/old"]
    assert env["PATH"].split(":")[0] == "/venv/bin"


def test_find_triton_installs_the_stub_idempotently() -> None:
    inst = find_triton()
    stub = inst.backends / "python" / "triton_python_backend_stub"
    assert inst.binary.is_file() and stub.is_file()
    before = stub.stat().st_mtime_ns
    again = find_triton()
    assert again == inst and stub.stat().st_mtime_ns == before
    assert inst.python == Path(sys.executable)
