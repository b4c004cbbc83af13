"""The mypyc build step's checks (the compile itself runs in `make native`, not here)."""

from __future__ import annotations

from pathlib import Path

from gateway.native_build import configured_modules, is_fresh, project_imports, shadowed_imports

ROOT = Path(__file__).resolve().parents[2]


def test_configured_modules_exist_and_have_no_shadowed_imports() -> None:
    mods = configured_modules(ROOT)
    assert mods and len(set(mods)) == len(mods)
    for m in mods:
        assert not m.endswith("__init__")
        assert shadowed_imports(ROOT, m) == [], m


def _tree(root: Path, init: str, user: str) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text(init)
    (root / "pkg" / "cost.py").write_text("def cost() -> float:\n    return 1.0\n")
    (root / "user.py").write_text(user)


def test_a_name_that_is_also_a_submodule_is_refused(tmp_path: Path) -> None:
    _tree(tmp_path, "from pkg.cost import cost\n", "import math\nfrom pkg import cost\n")
    (msg,) = shadowed_imports(tmp_path, "user")
    assert msg.startswith("user.py:2:") and "from pkg.cost import cost" in msg


def test_importing_the_submodule_itself_is_fine(tmp_path: Path) -> None:
    _tree(tmp_path, "", "from pkg import cost\nfrom pkg.cost import cost as c\n")
    assert shadowed_imports(tmp_path, "user") == []


def test_no_manifest_is_not_fresh(tmp_path: Path) -> None:
    assert not is_fresh(tmp_path, ["pkg.cost"])


def test_project_imports_of_the_set_are_listed() -> None:
    deps = project_imports(ROOT, configured_modules(ROOT))
    assert "gateway.prediction.profiles" in deps and "loadtest.sim.trace" in deps
    assert not set(deps) & set(configured_modules(ROOT))
    assert all(d.split(".")[0] in ("gateway", "loadtest", "workers") for d in deps)
