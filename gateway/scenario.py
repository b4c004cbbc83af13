"""Scenario files: a fleet of pools, a workload and faults (DESIGN.md §4).

A scenario is what the simulator, the live benchmark, the demo and the worker fleet all run.
:func:`load_scenario` validates the file and names the file, line and key of any problem:
unknown keys, a workload model no pool serves, a pool model with no profile, non-positive
rates or SLOs.

``time_scale`` multiplies every duration (profile latencies, ``rtt_ms``, ``slo_ms``,
``duration_s``, fault and speed-step times, burst and diurnal periods) and divides every rate,
so a scenario behaves the same on a slower clock; :meth:`Scenario.scaled` applies it.

``overhead_ms`` (optional, default 0) is the fixed cost of the live path per request that the
profiles do not contain: the client, the gateway, Triton's HTTP front end, ensemble and
python-backend IPC (docs/benchmarks.md, Simulator vs live). A number is a constant; ``{p50,
p99}`` a log-normal like a profile's, plus optionally ``device: {p50, p99}``. It is real time
on the machine that serves, so ``time_scale`` does **not** scale it. The simulator spends half
of the main part before the request takes an instance slot and half after it releases it, as
it does ``rtt_ms`` (it does not occupy the device), and its router predicts with it
(``PredictorConfig.overhead_ms``); ``device`` is added to the request's time on its slot
(the router's online correction sees it as service).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
)

from gateway.prediction.profiles import Z99, ProfileBook, default_profiles_dir, load_profiles
from gateway.yamlio import FormatError, format_validation_error, load_yaml

__all__ = [
    "Burst",
    "Fault",
    "FormatError",
    "LogNormalMs",
    "Overhead",
    "Pool",
    "Scenario",
    "SpeedStep",
    "Workload",
    "load_scenario",
]

Category = Literal["latency", "frequency"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpeedStep(_Strict):
    """From ``at_s`` on, the pool is ``factor`` times slower than its profile."""

    at_s: NonNegativeFloat
    factor: PositiveFloat


class Pool(_Strict):
    """Identical Triton servers of one architecture."""

    name: str = Field(min_length=1)
    arch: str = Field(min_length=1)
    workers: PositiveInt = 1
    instances: PositiveInt = 1
    rtt_ms: NonNegativeFloat | None = None
    models: list[str] = Field(min_length=1)
    speed: PositiveFloat | list[SpeedStep] = 1.0

    def speed_at(self, t_s: float) -> float:
        """True slowness factor at ``t_s`` seconds after the start (1.0 = as profiled)."""
        if not isinstance(self.speed, list):
            return float(self.speed)
        factor = 1.0
        for step in self.speed:
            if step.at_s <= t_s:
                factor = step.factor
        return factor

    def worker_ids(self) -> list[str]:
        """Stable worker ids ``<pool>-<i>``."""
        return [f"{self.name}-{i}" for i in range(self.workers)]


class Burst(_Strict):
    """``bursty`` arrivals: ``rate x factor`` for ``on_s``, then ``rate`` for ``off_s``."""

    on_s: PositiveFloat
    off_s: PositiveFloat
    factor: PositiveFloat


class Workload(_Strict):
    """One stream of requests for one model."""

    model: str
    rate_rps: PositiveFloat
    arrival: Literal["poisson", "constant", "bursty", "diurnal"] = "poisson"
    burst: Burst | None = None
    period_s: PositiveFloat | None = None
    amplitude: float = Field(default=0.5, ge=0, le=1)
    slo_ms: PositiveFloat
    priority: int = 0
    category: Category = "latency"
    batch: PositiveInt = 1


class Fault(_Strict):
    """A crash (server killed, restarted after ``for_s``) or a slowdown by ``factor``."""

    at_s: NonNegativeFloat
    pool: str
    worker: int | None = None
    kind: Literal["crash", "slowdown"]
    factor: PositiveFloat | None = None
    for_s: PositiveFloat | None = None


class LogNormalMs(_Strict):
    """A per-request cost (ms) drawn from a log-normal fitted to ``p50`` and ``p99``."""

    p50: NonNegativeFloat
    p99: NonNegativeFloat | None = None

    @property
    def mean_ms(self) -> float:
        """Mean of the fitted log-normal (ms); ``p50`` when there is no spread."""
        mu, sigma = self.lognormal()
        return 0.0 if self.p50 <= 0 else math.exp(mu + sigma * sigma / 2.0)

    def lognormal(self) -> tuple[float, float]:
        """``(mu, sigma)`` of ``ln(ms)`` (``sigma`` 0: constant; ``mu`` -inf for 0 ms)."""
        if self.p50 <= 0:
            return -math.inf, 0.0
        p99 = self.p99 if self.p99 is not None and self.p99 > self.p50 else self.p50
        return math.log(self.p50), math.log(p99 / self.p50) / Z99


class Overhead(LogNormalMs):
    """The live path's fixed cost per request outside the device (``p50``, ``p99``, ms), and
    ``device``: what it adds while holding an instance slot (sleep overshoot, backend IPC
    inside ``execute``), which the next request in the queue waits for too.
    """

    device: LogNormalMs | None = None


class Scenario(_Strict):
    """A whole scenario; ``profile_book`` holds the profiles it runs on."""

    name: str
    description: str = ""
    duration_s: PositiveFloat
    seed: int = 1
    time_scale: PositiveFloat = 1.0
    profiles: str | None = None
    pools: list[Pool] = Field(min_length=1)
    workload: list[Workload] = Field(min_length=1)
    faults: list[Fault] = Field(default_factory=list)
    overhead_ms: NonNegativeFloat | Overhead = 0.0
    _book: ProfileBook | None = PrivateAttr(default=None)
    _path: Path | None = PrivateAttr(default=None)

    @property
    def profile_book(self) -> ProfileBook:
        """The profiles this scenario runs on (its own ``profiles:`` dir or the project's)."""
        if self._book is None:
            raise FormatError(f"scenario {self.name}: profiles not loaded")
        return self._book

    @property
    def path(self) -> Path | None:
        """The file it was loaded from, if any."""
        return self._path

    def pool(self, name: str) -> Pool:
        """The pool called ``name``."""
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def overhead(self) -> Overhead:
        """``overhead_ms`` as an :class:`Overhead` (a number is a constant)."""
        o = self.overhead_ms
        return o if isinstance(o, Overhead) else Overhead(p50=float(o))

    def scaled(self) -> Scenario:
        """This scenario with ``time_scale`` applied and reset to 1.0 (``overhead_ms`` unscaled)."""
        k = self.time_scale
        if k == 1.0:
            return self
        pools = [
            p.model_copy(
                update={
                    "rtt_ms": (p.rtt_ms or 0.0) * k,
                    "speed": p.speed
                    if not isinstance(p.speed, list)
                    else [s.model_copy(update={"at_s": s.at_s * k}) for s in p.speed],
                }
            )
            for p in self.pools
        ]
        workload = [
            w.model_copy(
                update={
                    "rate_rps": w.rate_rps / k,
                    "slo_ms": w.slo_ms * k,
                    "period_s": None if w.period_s is None else w.period_s * k,
                    "burst": None
                    if w.burst is None
                    else w.burst.model_copy(
                        update={"on_s": w.burst.on_s * k, "off_s": w.burst.off_s * k}
                    ),
                }
            )
            for w in self.workload
        ]
        faults = [
            f.model_copy(
                update={"at_s": f.at_s * k, "for_s": None if f.for_s is None else f.for_s * k}
            )
            for f in self.faults
        ]
        out = self.model_copy(
            update={
                "duration_s": self.duration_s * k,
                "time_scale": 1.0,
                "pools": pools,
                "workload": workload,
                "faults": faults,
            }
        )
        out._book = self.profile_book.scaled(k)
        out._path = self._path
        return out

    def with_profiles(self, book: ProfileBook) -> Scenario:
        """Attach a profile book, resolve each pool's ``rtt_ms`` and cross-check models."""
        pools = []
        for p in self.pools:
            rtt = p.rtt_ms
            if rtt is None:
                arch = book.archs.get(p.arch)
                rtt = arch.rtt_ms if arch is not None else 0.0
            pools.append(p.model_copy(update={"rtt_ms": rtt}))
        out = self.model_copy(update={"pools": pools})
        out._book = book
        out._path = self._path
        return out


def _check(sc: Scenario, path: Path, raw: Any) -> None:
    book = sc.profile_book

    def where(*loc: str | int) -> str:
        from gateway.yamlio import locate

        return f"{path}:{locate(raw, loc)}"

    names: set[str] = set()
    served: set[str] = set()
    for i, p in enumerate(sc.pools):
        if p.name in names:
            raise FormatError(f"{where('pools', i, 'name')}: pools[{i}].name: duplicate {p.name!r}")
        names.add(p.name)
        for j, m in enumerate(p.models):
            if book.get(p.arch, m) is None:
                raise FormatError(
                    f"{where('pools', i, 'models', j)}: pools[{i}].models[{j}]: no profile for "
                    f"model {m!r} on arch {p.arch!r} in {book.directory}"
                )
            served.add(m)
        if p.workers < 1:
            raise FormatError(f"{where('pools', i, 'workers')}: pools[{i}].workers must be >= 1")
    for i, w in enumerate(sc.workload):
        if w.model not in served:
            raise FormatError(
                f"{where('workload', i, 'model')}: workload[{i}].model: no pool serves {w.model!r}"
            )
        if w.arrival == "bursty" and w.burst is None:
            raise FormatError(f"{where('workload', i)}: workload[{i}]: bursty arrival needs burst")
        if w.arrival == "diurnal" and w.period_s is None:
            raise FormatError(
                f"{where('workload', i)}: workload[{i}]: diurnal arrival needs period_s"
            )
        if not any(
            w.model in p.models and w.batch <= book.get(p.arch, w.model).max_batch  # type: ignore[union-attr]
            for p in sc.pools
        ):
            raise FormatError(
                f"{where('workload', i, 'batch')}: workload[{i}].batch {w.batch} exceeds every "
                f"serving pool's max_batch"
            )
    for i, f in enumerate(sc.faults):
        if f.pool not in names:
            raise FormatError(f"{where('faults', i, 'pool')}: faults[{i}].pool: no pool {f.pool!r}")
        pool = sc.pool(f.pool)
        if f.worker is not None and not 0 <= f.worker < pool.workers:
            raise FormatError(
                f"{where('faults', i, 'worker')}: faults[{i}].worker: pool {f.pool!r} has "
                f"{pool.workers} workers"
            )
        if f.kind == "slowdown" and f.factor is None:
            raise FormatError(f"{where('faults', i)}: faults[{i}]: slowdown needs factor")


def load_scenario(path: Path | str, profiles_dir: Path | None = None) -> Scenario:
    """Load, validate and cross-check a scenario file with its profiles.

    Args:
        path: the scenario YAML.
        profiles_dir: overrides the file's ``profiles:`` key (default: the project's profiles/).

    Raises:
        FormatError: naming the file, line and key of the problem.
    """
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise FormatError(f"{path}:1: a scenario must be a mapping")
    try:
        sc = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(path, raw, exc.errors()) from None
    sc._path = path
    if profiles_dir is None:
        profiles_dir = (
            (path.parent / sc.profiles).resolve() if sc.profiles else default_profiles_dir()
        )
    sc = sc.with_profiles(load_profiles(profiles_dir))
    _check(sc, path, raw)
    return sc
