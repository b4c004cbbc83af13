"""Offline latency profiles: measured latency of a model on an architecture, by batch size.

File format (DESIGN.md §5): ``profiles/<arch>/<model>.yaml`` with ``arch``, ``model``,
``engine``, ``source``, ``max_batch`` and ``latency_ms: {batch: {p50, p99}}``, plus an optional
``profiles/archs.yaml`` mapping each arch to ``{kind: edge|cloud, rtt_ms, notes}``.

Interpolation: between listed batch sizes, p50 and p99 are linear in batch; below the smallest
listed size the smallest is used; above the largest listed size (up to ``max_batch``) the last
segment's slope is extended. A request whose batch exceeds ``max_batch`` is **refused** for that
worker (it is not eligible); the gateway never splits a request.

Truth model for emulation and simulation: a service time is log-normal with median p50 and
99th percentile p99, i.e. ``ln(ms) ~ N(mu, sigma)`` with ``mu = ln(p50)`` and
``sigma = ln(p99 / p50) / 2.3263`` (2.3263 is the standard normal 99th percentile). Its mean is
``exp(mu + sigma^2 / 2)``. The gateway only ever sees the profile, never the truth.
"""

from __future__ import annotations

import itertools
import math
import sysconfig
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from gateway.yamlio import FormatError, format_validation_error, load_yaml

__all__ = ["Z99", "ArchInfo", "LatencyPoint", "Profile", "ProfileBook", "load_profiles"]

Z99 = 2.3263478740408408
"""Standard normal quantile at 0.99."""


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    """Latency at one batch size, in milliseconds."""

    batch: int
    p50: float
    p99: float


@dataclass(frozen=True, slots=True)
class ArchInfo:
    """What ``archs.yaml`` says of an architecture."""

    kind: Literal["edge", "cloud"] = "cloud"
    rtt_ms: float = 0.0
    notes: str = ""


@dataclass(frozen=True)
class Profile:
    """Latency of one model on one architecture, interpolated in batch size."""

    arch: str
    model: str
    max_batch: int
    points: tuple[LatencyPoint, ...]
    engine: str = ""
    source: str = ""
    _cache: dict[int, tuple[float, float]] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def _interp(self, batch: int) -> tuple[float, float]:
        hit = self._cache.get(batch)
        if hit is not None:
            return hit
        pts = self.points
        if batch <= pts[0].batch or len(pts) == 1:
            out = (pts[0].p50, pts[0].p99)
        else:
            lo, hi = pts[-2], pts[-1]
            for a, b in itertools.pairwise(pts):
                if batch <= b.batch:
                    lo, hi = a, b
                    break
            t = (batch - lo.batch) / (hi.batch - lo.batch)
            out = (lo.p50 + t * (hi.p50 - lo.p50), lo.p99 + t * (hi.p99 - lo.p99))
            out = (max(out[0], pts[0].p50), max(out[1], pts[0].p99))
        self._cache[batch] = out
        return out

    def supports(self, batch: int) -> bool:
        """Whether a request of ``batch`` items can run here (``1 <= batch <= max_batch``)."""
        return 1 <= batch <= self.max_batch

    def p50(self, batch: int = 1) -> float:
        """Median latency in ms at ``batch`` (interpolated)."""
        return self._interp(batch)[0]

    def p99(self, batch: int = 1) -> float:
        """99th percentile latency in ms at ``batch`` (interpolated)."""
        return self._interp(batch)[1]

    def lognormal(self, batch: int = 1) -> tuple[float, float]:
        """``(mu, sigma)`` of ``ln(ms)`` fitted to p50 and p99 at ``batch``."""
        p50, p99 = self._interp(batch)
        sigma = math.log(max(p99, p50) / p50) / Z99 if p50 > 0 else 0.0
        return math.log(p50), sigma

    def mean(self, batch: int = 1) -> float:
        """Mean service time in ms of the fitted log-normal."""
        mu, sigma = self.lognormal(batch)
        return math.exp(mu + sigma * sigma / 2.0)

    def sample(self, batch: int, rng: np.random.Generator) -> float:
        """Draw one true service time in ms."""
        mu, sigma = self.lognormal(batch)
        return float(math.exp(mu + sigma * rng.standard_normal())) if sigma > 0 else math.exp(mu)

    def scaled(self, factor: float) -> Profile:
        """The same profile with every latency multiplied by ``factor``."""
        pts = tuple(LatencyPoint(p.batch, p.p50 * factor, p.p99 * factor) for p in self.points)
        return replace(self, points=pts, _cache={})


@dataclass(frozen=True)
class ProfileBook:
    """All profiles of a directory, by ``(arch, model)``, and the architectures' info."""

    profiles: Mapping[tuple[str, str], Profile]
    archs: Mapping[str, ArchInfo]
    directory: Path | None = None

    def get(self, arch: str, model: str) -> Profile | None:
        """The profile of ``model`` on ``arch``, or None."""
        return self.profiles.get((arch, model))

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.profiles.values())

    def __len__(self) -> int:
        return len(self.profiles)

    def models(self) -> set[str]:
        """Every model some architecture has a profile for."""
        return {m for _, m in self.profiles}

    def arch_names(self) -> set[str]:
        """Every architecture with a profile or an ``archs.yaml`` entry."""
        return {a for a, _ in self.profiles} | set(self.archs)

    def scaled(self, factor: float) -> ProfileBook:
        """Every latency (and typical RTT) multiplied by ``factor``."""
        if factor == 1.0:
            return self
        return ProfileBook(
            {k: p.scaled(factor) for k, p in self.profiles.items()},
            {k: replace(a, rtt_ms=a.rtt_ms * factor) for k, a in self.archs.items()},
            self.directory,
        )


class _Point(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    p50: PositiveFloat
    p99: PositiveFloat


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    arch: str
    model: str
    engine: str = ""
    source: str = ""
    max_batch: PositiveInt
    latency_ms: dict[PositiveInt, _Point] = Field(min_length=1)


class _ArchEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["edge", "cloud"]
    rtt_ms: float = Field(default=0.0, ge=0)
    notes: str = ""


def _validate(model: type[BaseModel], path: Path, raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(path, raw, exc.errors()) from None


def load_profile(path: Path) -> Profile:
    """Load and validate one profile file."""
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise FormatError(f"{path}:1: a profile must be a mapping")
    spec: _ProfileFile = _validate(_ProfileFile, path, raw)
    line = getattr(raw, "key_lines", {}).get
    if spec.arch != path.parent.name or spec.model != path.stem:
        raise FormatError(
            f"{path}:{line('arch', 1)}: arch/model {spec.arch}/{spec.model} do not match "
            f"the path {path.parent.name}/{path.stem}.yaml"
        )
    points = tuple(LatencyPoint(b, v.p50, v.p99) for b, v in sorted(spec.latency_ms.items()))
    for p in points:
        if p.p99 < p.p50:
            raise FormatError(f"{path}:{line('latency_ms', 1)}: latency_ms.{p.batch}: p99 < p50")
    if points[-1].batch > spec.max_batch:
        raise FormatError(
            f"{path}:{line('latency_ms', 1)}: latency_ms lists batch {points[-1].batch} "
            f"above max_batch {spec.max_batch}"
        )
    return Profile(spec.arch, spec.model, spec.max_batch, points, spec.engine, spec.source)


def load_profiles(directory: Path) -> ProfileBook:
    """Load every ``<arch>/<model>.yaml`` under ``directory`` and its optional ``archs.yaml``.

    Raises:
        FormatError: naming the file, line and key of the first problem found.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FormatError(f"{directory}: profiles directory not found")
    archs: dict[str, ArchInfo] = {}
    archs_file = directory / "archs.yaml"
    if archs_file.exists():
        raw = load_yaml(archs_file) or {}
        if not isinstance(raw, dict):
            raise FormatError(f"{archs_file}:1: archs.yaml must map arch names to entries")
        for name, entry in raw.items():
            spec: _ArchEntry = _validate(_ArchEntry, archs_file, entry)
            archs[str(name)] = ArchInfo(spec.kind, spec.rtt_ms, spec.notes)
    profiles: dict[tuple[str, str], Profile] = {}
    for path in sorted(directory.glob("*/*.yaml")):
        prof = load_profile(path)
        profiles[(prof.arch, prof.model)] = prof
    if not profiles:
        raise FormatError(f"{directory}: no profiles (<arch>/<model>.yaml) found")
    return ProfileBook(profiles, archs, directory)


def default_profiles_dir() -> Path:
    """The project's profile library: ``profiles/`` next to the ``gateway`` package.

    That is where a source checkout (and an editable install) has it; a wheel installs it as
    data under ``<prefix>/share/synergai-gateway/profiles`` (``pyproject.toml``), which is used
    when the first is absent.
    """
    source = Path(__file__).resolve().parents[2] / "profiles"
    if source.is_dir():
        return source
    installed = Path(sysconfig.get_path("data")) / "share" / "synergai-gateway" / "profiles"
    return installed if installed.is_dir() else source
