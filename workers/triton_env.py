"""Where the native Triton server of the ``nvidia-pytriton`` wheel lives, and how to run it.

This module owns the recipe of DESIGN.md §9 so nobody else has to know it:

* the server binary is ``<site-packages>/pytriton/tritonserver/bin/tritonserver`` and its
  backends are in ``.../tritonserver/backends``;
* the python backend needs ``triton_python_backend_stub`` *beside* ``libtriton_python.so``;
  the wheel ships one stub per Python version under ``python_backend_stubs/<X.Y>/``, so we copy
  ours there once (idempotently, as PyTriton itself does); without it Triton says
  "triton_python_backend_stub is not found";
* the server's ``LD_LIBRARY_PATH`` starts with the venv Python's ``LIBDIR`` (else the stub may
  load another libpython silently) then ``nvidia_pytriton.libs``, and ``PATH`` starts with the
  venv's ``bin`` (else the stub imports the wrong site-packages, the wrong numpy, and models fail
  to load).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TritonInstall", "TritonNotFoundError", "find_triton"]


class TritonNotFoundError(RuntimeError):
    """The ``nvidia-pytriton`` wheel (or a piece of it) is not installed in this environment."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths of one Triton installation and the environment its processes need."""

    binary: Path
    backends: Path
    libs: Path
    python: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a ``tritonserver`` process (and so for its python-backend stubs).

        Args:
            base: environment to start from (default: this process's).

        Returns:
            A new dict with ``LD_LIBRARY_PATH`` and ``PATH`` set as DESIGN.md §9 says.
        """
        env = dict(os.environ if base is None else base)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        ld = [p for p in (libdir, str(self.libs)) if p]
        if env.get("LD_LIBRARY_PATH"):
            ld.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
        env["PATH"] = os.pathsep.join([str(self.python.parent), env.get("PATH", "/usr/bin:/bin")])
        # The stub runs the venv's interpreter; keep it from writing .pyc into the wheel.
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        return env


def _site_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotFoundError(
            "nvidia-pytriton is not installed: `pip install nvidia-pytriton==0.7.0`"
        )
    return Path(next(iter(spec.submodule_search_locations))).parent


def _install_stub(backends: Path, stubs: Path) -> None:
    """Copy the stub for this Python beside ``libtriton_python.so`` unless an equal one is there.

    The copy goes to a temporary name first and is renamed into place, so servers started in
    parallel (or by several test processes) never see a half-written executable.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    src = stubs / version / "triton_python_backend_stub"
    if not src.is_file():
        raise TritonNotFoundError(f"no python backend stub for Python {version} at {src}")
    dst = backends / "python" / "triton_python_backend_stub"
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".stub-")
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_triton() -> TritonInstall:
    """Locate the wheel's Triton server and make its python backend usable.

    Returns:
        The installation's paths.

    Raises:
        TritonNotFoundError: if the wheel or one of its parts is missing.
    """
    site = _site_root()
    root = site / "pytriton" / "tritonserver"
    binary = root / "bin" / "tritonserver"
    backends = root / "backends"
    libs = site / "nvidia_pytriton.libs"
    for path in (binary, backends / "python" / "libtriton_python.so", libs):
        if not path.exists():
            raise TritonNotFoundError(f"incomplete nvidia-pytriton install: {path} is missing")
    _install_stub(backends, root / "python_backend_stubs")
    return TritonInstall(binary=binary, backends=backends, libs=libs, python=Path(sys.executable))
