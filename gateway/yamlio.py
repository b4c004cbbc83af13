"""YAML loading that remembers where every key came from.

Config and data files (scenarios, profiles, gateway config) are validated after loading; a
validation error must name the file, the line and the key, so the loader keeps the line of each
mapping key. :func:`load_yaml` returns plain ``dict``/``list`` values (``LineDict`` is a ``dict``)
and :func:`locate` turns a pydantic error location into a line number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FormatError", "LineDict", "format_validation_error", "load_yaml", "locate"]


class FormatError(ValueError):
    """A data file is malformed; the message names the file, line and key."""


class LineDict(dict[Any, Any]):
    """A ``dict`` that knows the 1-based line of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are :class:`LineDict` with key line numbers."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in out:
            raise FormatError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)  # type: ignore[no-untyped-call]
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file, keeping line numbers of mapping keys.

    Raises:
        FormatError: the file is missing or not valid YAML (message names file and line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.load(text, Loader=_LineLoader)
    except FormatError as exc:
        raise FormatError(f"{path}:{exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FormatError(f"{path}{line}: invalid YAML: {problem}") from exc


def locate(root: Any, loc: Sequence[int | str]) -> int:
    """Best line number for a location path (``("pools", 0, "speed")``) inside ``root``."""
    line = getattr(root, "line", 0)
    node = root
    for part in loc:
        if isinstance(node, LineDict):
            line = node.key_lines.get(part, line)
            if part not in node:
                break
            node = node[part]
            line = getattr(node, "line", line) if isinstance(node, LineDict) else line
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            line = getattr(node, "line", line)
        else:
            break
    return int(line)


def format_validation_error(path: Path, raw: Any, errors: Sequence[Any]) -> FormatError:
    """Turn pydantic ``ValidationError.errors()`` into one :class:`FormatError`."""
    lines = []
    for err in errors:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic puts union/tag names in loc; keep only real keys and indexes.
        keys = [p for p in loc if isinstance(p, int) or (isinstance(p, str) and "[" not in p)]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in keys).lstrip(".")
        where = where or "<root>"
        msg = err["msg"]
        if err.get("type") == "extra_forbidden":
            msg = f"unknown key {keys[-1]!r}" if keys else "unknown key"
        lines.append(f"{path}:{locate(raw, keys)}: {where}: {msg}")
    return FormatError("\n".join(lines))
