"""Write a scenario and its own profile library as files a user can read and run.

``write_scenario(sc, out)`` writes ``out/<name>.yaml`` (DESIGN.md §4, with
``profiles: <name>-profiles``) and ``out/<name>-profiles/`` laid out as DESIGN.md §5
(``<arch>/<model>.yaml`` and ``archs.yaml``). Floats are written as Python's shortest
round-trip form, so :func:`gateway.scenario.load_scenario` on the files gives the same
scenario, profiles and simulation results (pinned by a test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gateway.prediction.profiles import ProfileBook
from gateway.scenario import Scenario

__all__ = ["scenario_document", "write_profiles", "write_scenario"]


def scenario_document(sc: Scenario, profiles: str | None) -> dict[str, Any]:
    """The scenario as a YAML-ready mapping (defaults left out, ``profiles`` set)."""
    doc = sc.model_dump(mode="json", exclude_defaults=True, exclude={"profiles"})
    doc["duration_s"] = sc.duration_s
    if profiles is not None:
        doc = {k: doc[k] for k in ("name", "description") if k in doc} | {
            "profiles": profiles,
            **{k: v for k, v in doc.items() if k not in ("name", "description")},
        }
    return doc


def write_profiles(book: ProfileBook, out: Path) -> None:
    """Every profile of ``book`` as ``out/<arch>/<model>.yaml``, plus ``out/archs.yaml``."""
    out.mkdir(parents=True, exist_ok=True)
    archs = {
        a: {"kind": info.kind, "rtt_ms": info.rtt_ms, "notes": info.notes or "synthetic"}
        for a, info in sorted(book.archs.items())
    }
    (out / "archs.yaml").write_text(yaml.safe_dump(archs, sort_keys=False))
    for prof in book:
        doc = {
            "arch": prof.arch,
            "model": prof.model,
            "engine": prof.engine or "synthetic",
            "source": prof.source or "loadtest.sim.families",
            "max_batch": prof.max_batch,
            "latency_ms": {p.batch: {"p50": p.p50, "p99": p.p99} for p in prof.points},
        }
        (out / prof.arch).mkdir(exist_ok=True)
        (out / prof.arch / f"{prof.model}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def write_scenario(sc: Scenario, out: Path) -> Path:
    """Write ``sc`` and its profiles under ``out``; the scenario file's path."""
    out.mkdir(parents=True, exist_ok=True)
    prof_dir = f"{sc.name}-profiles"
    write_profiles(sc.profile_book, out / prof_dir)
    path = out / f"{sc.name}.yaml"
    head = f"# {sc.description}\n" if sc.description else ""
    path.write_text(head + yaml.safe_dump(scenario_document(sc, prof_dir), sort_keys=False))
    return path
