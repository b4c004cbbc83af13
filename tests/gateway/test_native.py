"""The compiled-module loader: a build is used only while every compiled source is unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from gateway import native
from gateway.native import _check, build_dir, ext_tag, source_digest

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))


def _fake_build(root: Path, mkdir: bool = True, **changes: object) -> Path:
    """A tree with one source ``a/b.py`` and a manifest (placeholder extension files)."""
    (root / "a").mkdir(parents=True, exist_ok=not mkdir)
    src = root / "a" / "b.py"
    src.write_text("X = 1\n")
    bdir = build_dir(root)
    (bdir / "a").mkdir(parents=True)
    (bdir / "a" / f"b{SUFFIX}").write_bytes(b"")
    (bdir / f"g__mypyc{SUFFIX}").write_bytes(b"")
    entry = {"source": "a/b.py", "sha256": source_digest(src), "ext": f"a/b{SUFFIX}"}
    man: dict[str, object] = {
        "ext_tag": ext_tag(),
        "modules": {"a.b": entry},
        "shared": {"g__mypyc": f"g__mypyc{SUFFIX}"},
    }
    man.update(changes)
    (bdir / "manifest.json").write_text(json.dumps(man))
    return src


def test_fresh_build_serves_its_modules_and_shared_library(tmp_path: Path) -> None:
    _fake_build(tmp_path)
    files, modules, why = _check(tmp_path)
    assert why == "" and modules == ["a.b"]
    assert set(files) == {"a.b", "g__mypyc"}


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda src, bdir: src.write_text("X = 2\n"), "stale: a/b.py changed"),
        (lambda src, bdir: src.unlink(), "stale: a/b.py is missing"),
        (lambda src, bdir: (bdir / "a" / f"b{SUFFIX}").unlink(), "incomplete build"),
        (lambda src, bdir: (bdir / "manifest.json").write_text("{"), "unreadable manifest"),
        (lambda src, bdir: shutil.rmtree(bdir), "no build"),
    ],
)
def test_anything_but_a_fresh_complete_build_means_pure_python(
    tmp_path: Path, setup: object, reason: str
) -> None:
    src = _fake_build(tmp_path)
    setup(src, build_dir(tmp_path))  # type: ignore[operator]
    files, modules, why = _check(tmp_path)
    assert files == {} and modules == [] and why.startswith(reason)


def test_an_edited_import_of_the_set_turns_it_off(tmp_path: Path) -> None:
    """mypyc may inline a Final constant of a module the set imports: it is hashed too."""
    dep = tmp_path / "a" / "consts.py"
    dep.parent.mkdir(parents=True)
    dep.write_text("LIMIT = 1.0\n")
    entry = {"source": "a/consts.py", "sha256": source_digest(dep)}
    _fake_build(tmp_path, deps={"a.consts": entry}, mkdir=False)
    assert _check(tmp_path)[2] == ""
    dep.write_text("LIMIT = 2.0\n")
    assert _check(tmp_path)[2].startswith("stale: a/consts.py changed")


def test_other_interpreter_build_is_ignored(tmp_path: Path) -> None:
    _fake_build(tmp_path, ext_tag="cpython-399-other")
    assert _check(tmp_path)[2].startswith("built for cpython-399-other")


def test_failed_build_reason_is_reported(tmp_path: Path) -> None:
    failed = build_dir(tmp_path).with_suffix(".failed")
    failed.parent.mkdir(parents=True)
    failed.write_text("RuntimeError: mypyc said no\n")
    assert _check(tmp_path)[2].startswith("build failed") and "mypyc said no" in _check(tmp_path)[2]


def _probe(root: Path, env: dict[str, str]) -> dict[str, object]:
    code = (
        "import json, gateway.native as n, gateway.routing.view as v, gateway.routing.index as i;"
        "print(json.dumps({'status': n.status(), 'view': v.__file__, 'index': i.__file__}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


needs_build = pytest.mark.skipif(
    not native.status()["active"], reason=f"no fresh native build: {native.status()['reason']}"
)


@needs_build
def test_this_process_runs_the_whole_set_compiled() -> None:
    for name in native.status()["modules"]:  # type: ignore[attr-defined]
        mod = sys.modules.get(name) or __import__(name, fromlist=["_"])
        assert str(mod.__file__).startswith(str(build_dir(ROOT))), name


@needs_build
def test_one_edited_source_turns_the_whole_set_off(tmp_path: Path) -> None:
    """A copy of the tree with the real build: compiled; edit index.py: view is Python too."""
    for pkg in ("gateway", "loadtest"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(build_dir(ROOT), build_dir(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop(native.ENV, None)
    before = _probe(tmp_path, env)
    assert before["status"]["active"]  # type: ignore[index]
    assert str(before["view"]).endswith(SUFFIX) and str(before["index"]).endswith(SUFFIX)
    with (tmp_path / "gateway" / "routing" / "index.py").open("a") as f:
        f.write("# edited\n")
    after = _probe(tmp_path, env)
    assert not after["status"]["active"]  # type: ignore[index]
    assert "gateway/routing/index.py changed" in after["status"]["reason"]  # type: ignore[index]
    assert str(after["view"]).endswith("view.py") and str(after["index"]).endswith("index.py")
    assert _probe(tmp_path, {**env, native.ENV: "0"})["status"]["reason"] == (  # type: ignore[index]
        f"disabled by {native.ENV}=0"
    )
