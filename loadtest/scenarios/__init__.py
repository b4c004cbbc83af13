"""The scenarios shipped with the project (DESIGN.md §4), installed as package data.

Commands take ``--scenario`` as a file path or as the name of one of these (``demo``,
``edge-cloud``, ``issue15/bursts``...), so ``synergai demo`` works from any directory, not only
the repository root: defaults resolve from this package, as profiles resolve from ``gateway``
(a wheel installs both: ``pyproject.toml`` package data and data files).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT", "SCENARIOS_DIR", "bundled", "resolve"]

SCENARIOS_DIR = Path(__file__).resolve().parent
"""Where the bundled ``*.yaml`` scenarios live."""
DEFAULT = "demo"
"""The scenario a command runs when given none."""


def bundled() -> dict[str, Path]:
    """Name (file stem) -> path of every bundled scenario."""
    return {p.stem: p for p in sorted(SCENARIOS_DIR.glob("*.yaml"))}


def resolve(value: Path | str | None) -> Path:
    """The scenario file ``value`` names.

    ``None`` is the bundled :data:`DEFAULT`; an existing file is itself; otherwise a path
    inside this folder (``edge-cloud``, ``edge-cloud.yaml``, ``issue15/bursts``, or the
    repository-relative ``loadtest/scenarios/edge-cloud.yaml`` run from elsewhere) is that
    bundled file. Anything else is returned unchanged, so the loader reports it as unreadable
    with the path the user gave.
    """
    if value is None:
        return SCENARIOS_DIR / f"{DEFAULT}.yaml"
    path = Path(value)
    if path.is_file() or path.is_absolute():
        return path
    rel = path.as_posix().removeprefix("loadtest/scenarios/")
    for candidate in (SCENARIOS_DIR / rel, SCENARIOS_DIR / f"{rel}.yaml"):
        if candidate.suffix == ".yaml" and candidate.is_file():
            return candidate
    return path
