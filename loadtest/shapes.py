"""Locust load shapes: steps, bursts and a diurnal wave, as ``LoadTestShape`` classes.

Each shape is a pure function of elapsed time, ``users_at(t)``, wrapped in a ``LoadTestShape``
whose ``tick()`` returns ``(users, spawn_rate)`` until ``run_time_s`` and then ``None`` (the
test stops). The functions are the same ones the scenario format uses for arrival rates
(DESIGN.md §4), applied to user counts:

* :class:`StepShape`: ``users(t) = min(max_users, step_users x (1 + floor(t / step_s)))``;
* :class:`BurstShape`: ``base x factor`` users for ``on_s`` seconds, then ``base`` for ``off_s``,
  repeating from t=0;
* :class:`DiurnalShape`: ``base x (1 + amplitude x sin(2 pi t / period_s))``, at least 1;
* :class:`ConstantShape`: ``users`` throughout.

:func:`make_shape` builds one by name from keyword options (what the locustfile reads from its
command line); :data:`SHAPES` lists the names.
"""

from __future__ import annotations

import math
import time
from typing import Any

from locust import LoadTestShape

__all__ = [
    "SHAPES",
    "BurstShape",
    "ConstantShape",
    "DiurnalShape",
    "ShapeBase",
    "StepShape",
    "make_shape",
]


class ShapeBase(LoadTestShape):  # type: ignore[misc]
    """A shape defined by :meth:`users_at`; stops after ``run_time_s``.

    Args:
        run_time_s: seconds until ``tick()`` returns ``None``.
        spawn_rate: users started (or stopped) per second on a change.
    """

    abstract = True

    def __init__(self, run_time_s: float = 60.0, spawn_rate: float = 10.0) -> None:
        self.start_time = time.perf_counter()  # what LoadTestShape.__init__ does (untyped)
        self.run_time_s = run_time_s
        self.spawn_rate = spawn_rate

    def users_at(self, t_s: float) -> int:
        """Users wanted ``t_s`` seconds into the test."""
        raise NotImplementedError

    def tick(self) -> tuple[int, float] | None:
        """Locust's hook: ``(users, spawn_rate)`` now, or ``None`` to stop."""
        t = time.perf_counter() - self.start_time
        if t >= self.run_time_s:
            return None
        return self.users_at(t), self.spawn_rate


class ConstantShape(ShapeBase):
    """``users`` users throughout."""

    def __init__(self, users: int = 8, **kw: Any) -> None:
        super().__init__(**kw)
        self.users = max(1, users)

    def users_at(self, t_s: float) -> int:  # noqa: D102 - see class
        return self.users


class StepShape(ShapeBase):
    """``min(max_users, step_users x (1 + floor(t / step_s)))`` users."""

    def __init__(
        self, step_users: int = 4, step_s: float = 10.0, max_users: int = 64, **kw: Any
    ) -> None:
        super().__init__(**kw)
        if step_s <= 0:
            raise ValueError("step_s must be > 0")
        self.step_users, self.step_s, self.max_users = max(1, step_users), step_s, max_users

    def users_at(self, t_s: float) -> int:  # noqa: D102 - see class
        return min(self.max_users, self.step_users * (1 + int(t_s // self.step_s)))


class BurstShape(ShapeBase):
    """``base x factor`` users for ``on_s``, then ``base`` for ``off_s``, repeating from 0."""

    def __init__(
        self, base: int = 4, factor: float = 4.0, on_s: float = 5.0, off_s: float = 10.0, **kw: Any
    ) -> None:
        super().__init__(**kw)
        if on_s <= 0 or off_s <= 0:
            raise ValueError("on_s and off_s must be > 0")
        self.base, self.factor, self.on_s, self.off_s = max(1, base), factor, on_s, off_s

    def users_at(self, t_s: float) -> int:  # noqa: D102 - see class
        in_burst = (t_s % (self.on_s + self.off_s)) < self.on_s
        return max(1, round(self.base * self.factor)) if in_burst else self.base


class DiurnalShape(ShapeBase):
    """``base x (1 + amplitude x sin(2 pi t / period_s))`` users, at least one."""

    def __init__(
        self, base: int = 8, amplitude: float = 0.5, period_s: float = 60.0, **kw: Any
    ) -> None:
        super().__init__(**kw)
        if period_s <= 0 or not 0 <= amplitude <= 1:
            raise ValueError("period_s must be > 0 and 0 <= amplitude <= 1")
        self.base, self.amplitude, self.period_s = max(1, base), amplitude, period_s

    def users_at(self, t_s: float) -> int:  # noqa: D102 - see class
        wave = 1.0 + self.amplitude * math.sin(2.0 * math.pi * t_s / self.period_s)
        return max(1, round(self.base * wave))


SHAPES: dict[str, type[ShapeBase]] = {
    "constant": ConstantShape,
    "steps": StepShape,
    "bursts": BurstShape,
    "diurnal": DiurnalShape,
}
"""Shape names accepted by ``--shape``."""


def make_shape(
    name: str, users: int, run_time_s: float, spawn_rate: float = 10.0, period_s: float = 0.0
) -> ShapeBase:
    """Build shape ``name`` around ``users`` (its base, step or peak) for ``run_time_s``.

    Args:
        name: one of :data:`SHAPES`.
        users: ``constant``: users; ``steps``: the largest step (four steps up to it);
            ``bursts`` and ``diurnal``: the mean level.
        run_time_s: seconds of test.
        spawn_rate: users per second on changes.
        period_s: burst cycle or diurnal period (default: a quarter / all of the run).

    Raises:
        ValueError: unknown name.
    """
    kw: dict[str, Any] = {"run_time_s": run_time_s, "spawn_rate": spawn_rate}
    users = max(1, users)
    span = run_time_s if math.isfinite(run_time_s) else 60.0  # periods of an unbounded run
    if name == "constant":
        return ConstantShape(users=users, **kw)
    if name == "steps":
        step = max(1, users // 4)
        return StepShape(step_users=step, step_s=max(1.0, span / 4), max_users=users, **kw)
    if name == "bursts":
        cycle = period_s or max(2.0, span / 4)
        base = max(1, users // 2)
        return BurstShape(base=base, factor=3.0, on_s=cycle / 3, off_s=cycle * 2 / 3, **kw)
    if name == "diurnal":
        return DiurnalShape(base=users, amplitude=0.5, period_s=period_s or span, **kw)
    raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
