"""Build the compiled set: ``python -m gateway.native_build [--force] [--list]`` (``make native``).

The modules are listed in ``pyproject.toml``::

    [tool.synergai.native]
    modules = ["gateway.routing.view", ...]

To add one, append its dotted name and run ``make native``; it must pass ``mypy --strict``
(mypyc type-checks the whole set first) and must not ``from pkg import name`` where ``name``
is both a submodule of ``pkg`` and a name ``pkg/__init__.py`` binds (mypyc imports the
submodule there, not the name; the build stops and says which line). ``__init__`` modules
are not compiled. A compiled class cannot be subclassed by Python code (a test's variant of
a policy, say) unless it is decorated ``@mypyc_attr(allow_interpreted_subclasses=True)``
(``from mypy_extensions import mypyc_attr``): ``make test`` runs the suite on the compiled
build, so such a test fails there with "interpreted classes cannot inherit from compiled".
Compiled code must not rely on monkeypatching module functions or class attributes either.

The set is compiled by mypyc as one group (its modules call each other directly in C) into a
staging directory, then moved to ``build/native/<ext tag>/`` with a manifest of the SHA-256
of every source as read before the build (the build fails if one changed meanwhile).
:mod:`gateway.native` loads the build only while every hash still matches. Nothing is
written beside the sources. When the manifest is already fresh for the configured set this
does nothing (about 0.1 s). On failure the old build is removed (it is stale anyway), the
reason is written to ``build/native/<ext tag>.failed`` and the exit status is 1: the tree
then runs as pure Python, which is always a working fallback.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from gateway.native import MANIFEST, ROOT, build_dir, ext_tag, manifest_path, source_digest

__all__ = ["GROUP", "configured_modules", "is_fresh", "main", "project_imports", "shadowed_imports"]

GROUP = "synergai_native"
"""mypyc group name: the shared library is ``synergai_native__mypyc<EXT_SUFFIX>``."""


def configured_modules(root: Path = ROOT) -> list[str]:
    """The dotted module names of ``[tool.synergai.native] modules`` in ``pyproject.toml``."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    mods = data.get("tool", {}).get("synergai", {}).get("native", {}).get("modules", [])
    if not isinstance(mods, list) or not all(isinstance(m, str) for m in mods):
        raise ValueError("[tool.synergai.native] modules must be a list of module names")
    return list(mods)


def _source(root: Path, module: str) -> Path:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        raise ValueError(f"{module}: no source file {path}")
    return path


def is_fresh(root: Path, modules: Sequence[str]) -> bool:
    """Whether the build's manifest covers exactly ``modules`` with their current sources."""
    try:
        man = json.loads(manifest_path(root).read_text())
        entries = man["modules"]
        if man.get("ext_tag") != ext_tag() or set(entries) != set(modules):
            return False
        if set(man.get("deps", ())) != set(project_imports(root, modules)):
            return False
        every = [*entries.values(), *man.get("deps", {}).values()]
        return all(source_digest(root / e["source"]) == e["sha256"] for e in every)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def project_imports(root: Path, modules: Sequence[str]) -> list[str]:
    """Project modules (``gateway``, ``loadtest``, ``workers``) the set imports directly.

    Outside the set: mypyc may have inlined their ``Final`` constants, so their sources are
    hashed into the manifest with the set's. A package's ``__init__`` stands for it.
    """
    found: set[str] = set()
    for m in modules:
        path = _source(root, m)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in ("gateway", "loadtest", "workers"):
                    continue
                base = root.joinpath(*name.split("."))
                if base.with_suffix(".py").is_file():
                    found.add(name)
                elif (base / "__init__.py").is_file():
                    found.add(f"{name}.__init__")
    return sorted(found - set(modules))


def _binds(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def shadowed_imports(root: Path, module: str) -> list[str]:
    """``from pkg import name`` lines of ``module`` that mypyc would resolve to a submodule.

    ``name`` is both ``pkg/name.py`` (or a subpackage) and a name bound in
    ``pkg/__init__.py`` (Python gives the name; mypyc gives the module).
    """
    path = _source(root, module)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        pkg = root.joinpath(*node.module.split("."))
        init = pkg / "__init__.py"
        if not init.is_file():
            continue
        init_tree = ast.parse(init.read_text(), str(init))
        for a in node.names:
            sub = pkg / a.name
            if (sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file()) and _binds(
                init_tree, a.name
            ):
                rel = path.relative_to(root)
                out.append(
                    f"{rel}:{node.lineno}: `from {node.module} import {a.name}` names both a "
                    f"submodule and a name in its __init__: import it as "
                    f"`from {node.module}.{a.name} import {a.name}`"
                )
    return out


def _compile(root: Path, modules: Sequence[str], staging: Path, work: Path) -> None:
    from mypyc.build import mypycify  # dev dependency (mypy ships mypyc)
    from setuptools import Distribution

    paths = [str(_source(root, m).relative_to(root)) for m in modules]
    opts = ["--cache-dir", str(work / "mypy_cache"), *paths]
    exts = mypycify(opts, opt_level="3", group_name=GROUP, target_dir=str(work / "c"))
    dist = Distribution({"name": GROUP, "ext_modules": exts})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(staging)  # type: ignore[attr-defined]
    cmd.build_temp = str(work / "tmp")  # type: ignore[attr-defined]
    cmd.inplace = False  # type: ignore[attr-defined]
    dist.run_command("build_ext")


def build(root: Path, modules: Sequence[str]) -> Path:
    """Compile ``modules`` and install the build atomically; the build directory.

    Raises:
        RuntimeError: a shadowed import, a source edited during the build, or a missing output.
    """
    problems = [p for m in modules for p in shadowed_imports(root, m)]
    if problems:
        raise RuntimeError("\n".join(problems))
    if any(m.rsplit(".", 1)[-1] == "__init__" for m in modules):
        raise RuntimeError("__init__ modules are not compiled: list the modules themselves")
    deps = project_imports(root, modules)
    digests = {m: source_digest(_source(root, m)) for m in [*modules, *deps]}
    final = build_dir(root)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = str(sysconfig.get_config_var("EXT_SUFFIX"))
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".work-") as tmp:
        work = Path(tmp)
        staging = work / "out"
        cwd = os.getcwd()
        os.chdir(root)  # mypy resolves `gateway.*` from the tree being built
        try:
            _compile(root, modules, staging, work)
        finally:
            os.chdir(cwd)
        changed = [m for m in digests if source_digest(_source(root, m)) != digests[m]]
        if changed:
            raise RuntimeError(f"{changed[0]} changed during the build: run it again")
        entries = {}
        for m in modules:
            ext = Path(*m.split(".")).with_suffix("").as_posix() + suffix
            if not (staging / ext).is_file():
                raise RuntimeError(f"mypyc produced no {ext}")
            src = _source(root, m).relative_to(root).as_posix()
            entries[m] = {"source": src, "sha256": digests[m], "ext": ext}
        shared = {f"{GROUP}__mypyc": f"{GROUP}__mypyc{suffix}"}
        if not (staging / shared[f"{GROUP}__mypyc"]).is_file():
            raise RuntimeError(f"mypyc produced no {GROUP}__mypyc{suffix}")
        dep_entries = {
            d: {"source": _source(root, d).relative_to(root).as_posix(), "sha256": digests[d]}
            for d in deps
        }
        manifest = {"ext_tag": ext_tag(), "modules": entries, "shared": shared, "deps": dep_entries}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        old = work / "old"
        if final.exists():
            final.rename(old)
        staging.rename(final)
    return final


def failed_path(root: Path = ROOT) -> Path:
    """Where the reason of the last failed build is kept (removed by a good build)."""
    return build_dir(root).with_suffix(".failed")


def main(argv: Sequence[str] | None = None) -> int:
    """Build when stale; exit 0 when the build is fresh, 1 when it failed (pure Python then)."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = ROOT
    modules = configured_modules(root)
    if "--list" in args:
        print("\n".join(modules))
        return 0
    if "--force" not in args and is_fresh(root, modules):
        print(f"native: {len(modules)} compiled modules up to date ({build_dir(root)})")
        return 0
    t0 = time.monotonic()
    print(f"native: compiling {len(modules)} modules with mypyc ...", flush=True)
    try:
        out = build(root, modules)
    except (Exception, SystemExit) as e:  # any failure leaves a pure-Python tree
        if isinstance(e, SystemExit):
            e = RuntimeError(f"mypyc stopped (exit {e.code}): see its messages above")
        shutil.rmtree(build_dir(root), ignore_errors=True)
        failed_path(root).parent.mkdir(parents=True, exist_ok=True)
        failed_path(root).write_text(f"{type(e).__name__}: {e}\n")
        print(f"native: build FAILED, the tree runs as pure Python: {e}", file=sys.stderr)
        return 1
    failed_path(root).unlink(missing_ok=True)
    print(f"native: built {out} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
