"""Compiled (mypyc) hot modules, used only while they match the source they were built from.

``make`` builds the modules listed in ``pyproject.toml`` (``[tool.synergai.native]``) with
mypyc into ``build/native/<ext tag>/`` (:mod:`gateway.native_build`), never beside the
sources, and writes a manifest there with the SHA-256 of every source it compiled. At the
first ``import gateway`` (``loadtest`` imports it first too), :func:`install` reads that
manifest and re-hashes the sources: only when **every** listed source is byte-identical to
what was compiled is a finder put at the front of ``sys.meta_path``, and it then serves the
whole set from the build directory. The project modules the set imports directly are hashed
too (``deps``): mypyc inlines a ``Final`` constant imported from another module, so an edit
there must also turn the build off. One edited file turns the whole set off, because the
compiled modules of a group call each other directly in C: a fresh ``view`` extension would
otherwise still run a stale ``index``. So an edit can never be shadowed by an old build; the
edited tree simply runs as pure Python until ``make`` rebuilds it.

``SYNERGAI_NATIVE=0`` forces pure Python (tests compare both). :func:`status` says which is
in use and why; ``python -m loadtest.sim.speed`` prints it.

Cost at import: reading the manifest and hashing the listed sources (about 0.1 ms for 150 KB).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["ENV", "build_dir", "install", "manifest_path", "source_digest", "status"]

ENV = "SYNERGAI_NATIVE"
"""Set to ``0`` to run the pure-Python modules even when a fresh build exists."""
ROOT = Path(__file__).resolve().parent.parent
"""The source tree (the directory holding ``gateway/``)."""
MANIFEST = "manifest.json"

_state: dict[str, object] = {"active": False, "reason": "not checked", "modules": []}


def ext_tag() -> str:
    """This interpreter's extension tag, e.g. ``cpython-311-x86_64-linux-gnu``."""
    suffix = str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    return suffix.removeprefix(".").rsplit(".", 1)[0]


def build_dir(root: Path = ROOT) -> Path:
    """Where the build for this interpreter lives (one per extension tag)."""
    return root / "build" / "native" / ext_tag()


def manifest_path(root: Path = ROOT) -> Path:
    """The build's manifest (absent: nothing built)."""
    return build_dir(root) / MANIFEST


def source_digest(path: Path) -> str:
    """SHA-256 (hex) of a source file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Finder(importlib.abc.MetaPathFinder):
    """Serves the modules of one fresh build from its directory; declines everything else."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        f = self.files.get(fullname)
        if f is None or not f.is_file():  # a rebuild moved it away since start-up: Python
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(f))
        return importlib.util.spec_from_file_location(fullname, f, loader=loader)


def _check(root: Path) -> tuple[dict[str, Path], list[str], str]:
    """``(files by module name, compiled module names, "")`` if fresh, else ``({}, [], why)``."""
    mpath = manifest_path(root)
    if not mpath.is_file():
        failed = mpath.parent.with_suffix(".failed")
        if failed.is_file():
            return {}, [], f"build failed ({failed}): {failed.read_text().strip()[:300]}"
        return {}, [], "no build (run `make native`)"
    try:
        man = json.loads(mpath.read_text())
        modules: dict[str, dict[str, str]] = man["modules"]
        shared: dict[str, str] = man["shared"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {}, [], f"unreadable manifest {mpath}: {e}"
    if man.get("ext_tag") != ext_tag():
        return {}, [], f"built for {man.get('ext_tag')}, not {ext_tag()}"
    bdir = mpath.parent
    for entry in [*modules.values(), *man.get("deps", {}).values()]:
        try:
            digest = source_digest(root / entry["source"])
        except OSError:
            return {}, [], f"stale: {entry['source']} is missing"
        if digest != entry["sha256"]:
            return {}, [], f"stale: {entry['source']} changed since the build (run `make native`)"
    files = {name: bdir / entry["ext"] for name, entry in modules.items()}
    for name, ext in shared.items():
        files[name] = bdir / ext
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        return {}, [], f"incomplete build: {missing[0]} is missing"
    return files, sorted(modules), ""


def install(root: Path = ROOT) -> bool:
    """Put the finder for a fresh build in front of the import system (once); whether it did.

    Must run before any module of the set is imported (``gateway/__init__.py`` calls it). A
    module of the set already imported as Python stays Python: then nothing is installed, so
    one process never mixes a compiled and an interpreted copy of the group.
    """
    if _state["reason"] != "not checked":
        return bool(_state["active"])
    if os.environ.get(ENV, "1") == "0":
        _state.update(active=False, reason=f"disabled by {ENV}=0")
        return False
    files, modules, why = _check(root)
    if why:
        _state.update(active=False, reason=why)
        return False
    early = [m for m in modules if m in sys.modules]
    if early:
        _state.update(active=False, reason=f"{early[0]} was imported before the check")
        return False
    sys.meta_path.insert(0, _Finder(files))
    _state.update(active=True, reason="fresh build", modules=modules)
    return True


def status() -> dict[str, object]:
    """``{"active": bool, "reason": str, "modules": [names]}`` of this process."""
    return dict(_state)
