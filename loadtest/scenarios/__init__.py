"""The scenarios shipped with the project (DESIGN.md §4), installed as package data.

Commands take ``--scenario`` as a file path or as the name of one of these (``demo``,
``edge-cloud``, ...), so ``synergai demo`` works from any directory, not only the repository
root: defaults resolve from this package, as profiles resolve from ``gateway``.
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

    ``None`` is the bundled :data:`DEFAULT`; an existing file is itself; a bundled scenario's
    name (``edge-cloud``, with or without ``.yaml``, or the repository-relative
    ``loadtest/scenarios/edge-cloud.yaml`` run from elsewhere) is that file. Anything else is
    returned unchanged, so the loader reports it as unreadable with the path the user gave.
    """
    if value is None:
        return SCENARIOS_DIR / f"{DEFAULT}.yaml"
    path = Path(value)
    if path.is_file():
        return path
    ships = bundled()
    name = path.name.removesuffix(".yaml")
    if name in ships and (path.parent == Path() or path.parent.as_posix().endswith("scenarios")):
        return ships[name]
    return path
