"""The live benchmark's stack: Valkey + a scenario's Triton fleet + gateway replicas per policy.

The Triton fleet itself belongs to :mod:`workers` (launcher, fleet, fault injection), gateway
processes to :mod:`loadtest.gateway_process`; this module puts them together:

* :class:`LiveStack`: Valkey (:class:`gateway.embedded.EmbeddedValkey`, shared by every
  replica: one queue view for all of them) + the fleet + ``replicas`` gateways per policy,
  Redis flushed in between, torn down together;
* :func:`write_profiles` / :func:`write_worker_config`: the files a gateway is started with;
* :func:`decision_us_p50`: the median routing decision time, read back from the gateway's
  ``synergai_routing_decision_seconds`` histogram.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from gateway.embedded import EmbeddedValkey
from loadtest.gateway_process import GatewayProcess

__all__ = ["LiveStack", "decision_us_p50", "write_profiles", "write_worker_config"]


def write_worker_config(
    path: Path, workers: Sequence[Mapping[str, Any]], models: Mapping[str, Any] | None = None
) -> Path:
    """Write a gateway config (``gateway.settings`` file format) listing ``workers``.

    Used where no fleet writes one (the overhead benchmark's single server); a scenario's fleet
    writes its own with ``workers.fleet.write_gateway_config``.
    """
    doc: dict[str, Any] = {"workers": [dict(w) for w in workers]}
    if models:
        doc["models"] = {k: dict(v) for k, v in models.items()}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def decision_us_p50(metrics_texts: Sequence[str]) -> float | None:
    """Median of ``synergai_routing_decision_seconds`` over replicas, in µs.

    Sums the cumulative buckets of every replica and interpolates linearly inside the bucket
    holding the median (the usual Prometheus ``histogram_quantile``).
    """
    buckets: dict[float, float] = {}
    for text in metrics_texts:
        for line in text.splitlines():
            if not line.startswith("synergai_routing_decision_seconds_bucket"):
                continue
            try:
                labels, value = line.rsplit(" ", 1)
                le = labels.split('le="', 1)[1].split('"', 1)[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(value)
            except (IndexError, ValueError):
                continue
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = total / 2
    prev_b, prev_c = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_b * 1e6
            frac = 0.0 if c == prev_c else (rank - prev_c) / (c - prev_c)
            return (prev_b + (b - prev_b) * frac) * 1e6
        prev_b, prev_c = b, c
    return None


def write_profiles(book: Any, pairs: Sequence[tuple[str, str]], directory: Path) -> Path:
    """Write ``(arch, model)`` profiles of ``book`` as DESIGN.md §5 files under ``directory``.

    The live gateway must predict with the *time-scaled* profiles the emulated fleet runs on,
    so the benchmark writes the scaled book (``Scenario.scaled().profile_book``) to a temporary
    directory and points the gateway's ``profiles:`` at it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for arch, model in sorted(set(pairs)):
        prof = book.get(arch, model)
        if prof is None:
            continue
        doc = {
            "arch": arch,
            "model": model,
            "engine": prof.engine or "emulated",
            "source": f"time-scaled copy for a live benchmark ({prof.source})"[:500],
            "max_batch": prof.max_batch,
            "latency_ms": {p.batch: {"p50": p.p50, "p99": p.p99} for p in prof.points},
        }
        (directory / arch).mkdir(exist_ok=True)
        (directory / arch / f"{model}.yaml").write_text(
            yaml.safe_dump(doc, sort_keys=False), encoding="utf-8"
        )
    archs = {
        name: {"kind": info.kind, "rtt_ms": info.rtt_ms, "notes": info.notes}
        for name, info in book.archs.items()
        if any(a == name for a, _ in pairs)
    }
    if archs:
        (directory / "archs.yaml").write_text(yaml.safe_dump(archs), encoding="utf-8")
    return directory


class LiveStack:
    """Valkey + a scenario's emulated Triton fleet + gateway replicas, torn down together.

    The fleet and Valkey live for the whole benchmark; gateways are started per policy
    (:meth:`start_gateways`) and stopped after it (:meth:`stop_gateways`), with Redis flushed in
    between, so every policy starts from the same cold state.

    Args:
        scenario: the (unscaled) scenario; the fleet applies ``time_scale``.
        workdir: logs, gateway config and scaled profiles go here.
        replicas: gateway replicas per policy.
        progress: print progress lines to stderr.
        via: ``gateway`` (``synergai serve`` replicas) or ``envoy``: per policy one real Envoy
            with ``synergai epp`` (that policy, the same config and Valkey) picking for it
            (:class:`gateway.epp.stack.EnvoyStack`); ``replicas`` is then ignored.
        settings: extra gateway settings for every gateway (and endpoint picker), e.g.
            ``{"overhead_ms": 2.1}`` (:mod:`loadtest.bench_calibrate`).
    """

    def __init__(
        self,
        scenario: Any,
        workdir: Path,
        *,
        replicas: int = 1,
        progress: bool = True,
        via: str = "gateway",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.scenario = scenario
        self.settings = dict(settings or {})
        self.workdir = workdir
        self.replicas = max(1, replicas)
        self.progress = progress
        self.via = via
        self.valkey = EmbeddedValkey()
        self.fleet: Any = None
        self.config: Path | None = None
        self.gateways: list[Any] = []
        """The front doors of the current policy: ``GatewayProcess`` or ``EnvoyStack``."""

    def _say(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)

    def start(self) -> None:
        """Start Valkey and the fleet, write the gateway config."""
        from workers.fleet import Fleet

        try:
            self.valkey.start()
            self._say(f"valkey on {self.valkey.url}")
            self.fleet = Fleet(
                self.scenario, workdir=self.workdir / "fleet", progress=self.progress
            )
            workers = self.fleet.start()
            scaled = self.fleet.scenario
            pairs = [(p.arch, m) for p in scaled.pools for m in p.models]
            profiles = write_profiles(scaled.profile_book, pairs, self.workdir / "profiles")
            models: dict[str, dict[str, Any]] = {}
            for w in scaled.workload:
                models.setdefault(
                    w.model,
                    {"slo_ms": w.slo_ms, "priority": w.priority, "category": w.category},
                )
            self.config = self.workdir / "gateway.yaml"
            doc = {
                "profiles": str(profiles),
                "workers": [w.as_config() for w in workers],
                "models": models,
                **self.settings,
            }
            self.config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        except BaseException:
            self.stop()
            raise

    def start_gateways(self, policy: str) -> list[Any]:
        """Flush Redis and start ``replicas`` gateways with ``policy``; wait until ready.

        With ``via="envoy"``: one Envoy + endpoint picker instead (same URLs and ``metrics()``).
        """
        if self.config is None:
            raise RuntimeError("start() the stack first")
        self.stop_gateways()
        self.valkey.flush()
        if self.via == "envoy":
            return self._start_envoy(policy)
        self.gateways = [
            GatewayProcess(
                self.config,
                self.workdir,
                policy=policy,
                redis_url=self.valkey.url,
                name=f"{policy}-{i}",
                seed=int(getattr(self.scenario, "seed", 0)) + i,
            )
            for i in range(self.replicas)
        ]
        for g in self.gateways:
            g.start()
        try:
            for g in self.gateways:
                g.wait_ready()
        except BaseException:
            self.stop_gateways()
            raise
        return self.gateways

    def _start_envoy(self, policy: str) -> list[Any]:
        from gateway.epp.stack import EnvoyStack

        assert self.config is not None
        doc = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        settings = {"policy": policy, "models": doc.get("models", {}),
                    "seed": int(getattr(self.scenario, "seed", 0)), **self.settings}  # fmt: skip
        front = EnvoyStack(
            doc["workers"], self.workdir / f"envoy-{policy}", Path(doc["profiles"]),
            settings=settings, redis_url=self.valkey.url, concurrency=2,
        )  # fmt: skip
        self.gateways = [front]
        front.start()
        return self.gateways

    def stop_gateways(self) -> None:
        """Stop every gateway replica (in parallel: SIGTERM all first)."""
        for g in self.gateways:
            g.terminate()
        for g in self.gateways:
            g.stop()
        self.gateways = []

    def stop(self) -> None:
        """Stop gateways, the fleet and Valkey (idempotent)."""
        try:
            self.stop_gateways()
        finally:
            try:
                if self.fleet is not None:
                    self.fleet.stop()
                    self.fleet = None
            finally:
                self.valkey.stop()

    def __enter__(self) -> LiveStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
