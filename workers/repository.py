"""Generated Triton model repositories for emulated servers.

One emulated server (one device) gets its own repository in a temporary directory: one
python-backend model, ``_emulated_device`` (``DEVICE_MODEL``), running
``workers/models/emulated/model.py`` with ``instance_group [{count: instances}]``, and one
**ensemble** per scenario model whose single step sends the request to the device
(``INPUTk`` -> ``INPUTk__<i>``, ``OUTPUTk__<i>`` -> ``OUTPUTk``, ``i`` the model's index: that is
how the device knows which model's latency to emulate).

Why: every request of the server, whatever its model, waits in **one** Triton queue, the device
model's, which is FIFO, and ``instances`` device stubs serve it: a FIFO server with
``instances`` slots, as DESIGN.md §4 and the simulator say. An ensemble holds no stub, so
requests wait in Triton, not in processes (one stub per slot, ~42 MB each, whatever the number
of models). ``nv_inference_pending_request_count{model="_emulated_device"}`` and its
``queue_duration_us`` show the real queue.

What was there before, and why it went: one python model per scenario model, every instance
holding one unit of a global rate-limiter resource ``SLOT`` (``--rate-limit=execution_count
--rate-limit-resource=SLOT:<instances>``). Triton's rate limiter gives a freed slot to the
staged model instance with the lowest ``exec_count x priority``, i.e. to the model that has
run least so far, not to the oldest request: on a server with a busy and a quiet model every
waiting request of the quiet model jumped the busy model's queue (measured: 12 % of yolov8n
requests overtaken on edge-burst's AGX boxes, docs/workers.md). The device instances still
carry the ``SLOT`` resource and the server still runs with the flags (one model: the limiter
changes nothing), so the worker image's entrypoint works unchanged.

Why not ``async def execute`` in decoupled mode (one stub for any number of waiting requests):
Triton 2.51 refuses unary inference on decoupled models over both protocols ("HTTP end point
doesn't support models with decoupled transaction policy", "ModelInfer RPC doesn't support
models with decoupled transaction policy"), and the gateway forwards unary requests.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.prediction.profiles import Profile

__all__ = [
    "DEVICE_MODEL",
    "MODEL_SOURCE",
    "SLOT_RESOURCE",
    "EmulatedModel",
    "ServerSpec",
    "busy_slots",
    "reset_slots",
    "slots_file",
    "write_repository",
]

MODEL_SOURCE = Path(__file__).parent / "models" / "emulated" / "model.py"
"""The python-backend model every emulated model runs."""

DEVICE_MODEL = "_emulated_device"
"""The python-backend model that emulates the device; every public model is an ensemble on it."""

SLOT_RESOURCE = "SLOT"
"""Name of the global rate-limiter resource that stands for one execution slot of the device."""

# (input, output, Triton data type): every input is optional; see model.py for the computation.
IO_TENSORS: tuple[tuple[str, str, str], ...] = (
    ("INPUT0", "OUTPUT0", "TYPE_FP32"),
    ("INPUT1", "OUTPUT1", "TYPE_INT64"),
    ("INPUT2", "OUTPUT2", "TYPE_STRING"),
)


@dataclass(frozen=True)
class EmulatedModel:
    """One model of an emulated server: its name and its true latency by batch size.

    ``lognormal[b] = (mu, sigma)`` of ``ln(ms)`` at batch ``b`` for every ``b`` in
    ``1..max_batch`` (precomputed so the stub needs no profile code).
    """

    name: str
    max_batch: int
    lognormal: Mapping[int, tuple[float, float]]

    @classmethod
    def from_profile(cls, profile: Profile, name: str | None = None) -> EmulatedModel:
        """The model a profile describes (``Profile.lognormal`` at every batch size)."""
        table = {b: profile.lognormal(b) for b in range(1, profile.max_batch + 1)}
        return cls(name=name or profile.model, max_batch=profile.max_batch, lognormal=table)

    @classmethod
    def fixed(
        cls, name: str, ms: float, max_batch: int = 8, per_item_ms: float = 0.0
    ) -> EmulatedModel:
        """A deterministic model: ``ms + per_item_ms * (b - 1)`` at batch ``b`` (for tests)."""
        table = {b: (math.log(ms + per_item_ms * (b - 1)), 0.0) for b in range(1, max_batch + 1)}
        return cls(name=name, max_batch=max_batch, lognormal=table)


@dataclass(frozen=True)
class ServerSpec:
    """What one emulated Triton server (one device) runs.

    Attributes:
        name: unique name of the server, e.g. ``edge-agx-0``; used for its directory.
        models: the models it serves.
        instances: concurrent executions, shared by all models (a server is one device).
        speed: pool speed schedule ``[(at_s, factor)]`` relative to the fleet clock origin;
            ``[(0, f)]`` is a constant factor f. Before the first entry its factor applies.
        seed: base seed of the service-time draws.
        queue_gap_ms: an execution that starts within this many ms of the latest slot release
            was waiting: its emulated start is that slot's previous deadline (model.py), so
            Triton's per-execution overhead does not pile up in a queue; 0 turns it off.
        catchup_ms: how far back (ms) such an emulated start may be, at most.
    """

    name: str
    models: Sequence[EmulatedModel]
    instances: int = 1
    speed: Sequence[tuple[float, float]] = field(default_factory=lambda: [(0.0, 1.0)])
    seed: int = 0
    queue_gap_ms: float = 3.0
    catchup_ms: float = 1.0

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError(f"{self.name}: instances must be >= 1, not {self.instances}")
        if not self.models:
            raise ValueError(f"{self.name}: a server needs at least one model")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate model names {names}")

    @property
    def model_names(self) -> list[str]:
        """Names of the models, in order."""
        return [m.name for m in self.models]


def _pbtxt_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _device_config(spec: ServerSpec, control_file: Path) -> str:
    emulation = {
        "models": [
            {
                "name": m.name,
                "lognormal": {str(b): list(v) for b, v in sorted(m.lognormal.items())},
            }
            for m in spec.models
        ],
        "server": spec.name,
        "instances": spec.instances,
        "slots_file": str(slots_file(control_file)),
        "queue_gap_ms": spec.queue_gap_ms,
        "catchup_ms": spec.catchup_ms,
        "control_file": str(control_file),
        "speed": [list(p) for p in spec.speed],
        "seed": spec.seed,  # last: docker/worker/entrypoint.sh rewrites '"seed": 0}'
    }
    param = _pbtxt_string(json.dumps(emulation))
    inputs = ",\n  ".join(
        f'{{name: "{i}__{k}", data_type: {t}, dims: [-1], optional: true}}'
        for k in range(len(spec.models))
        for i, _, t in IO_TENSORS
    )
    outputs = ",\n  ".join(
        f'{{name: "{o}__{k}", data_type: {t}, dims: [-1]}}'
        for k in range(len(spec.models))
        for _, o, t in IO_TENSORS
    )
    return (
        f'name: "{DEVICE_MODEL}"\n'
        'backend: "python"\n'
        f"max_batch_size: {max(m.max_batch for m in spec.models)}\n"
        f"input [\n  {inputs}\n]\n"
        f"output [\n  {outputs}\n]\n"
        f"instance_group [{{\n  count: {spec.instances}\n  kind: KIND_CPU\n"
        f'  rate_limiter {{ resources [{{name: "{SLOT_RESOURCE}", global: true, count: 1}}] }}\n'
        "}]\n"
        f'parameters {{ key: "emulation" value {{ string_value: {param} }} }}\n'
    )


def _ensemble_config(model: EmulatedModel, index: int) -> str:
    inputs = ",\n  ".join(
        f'{{name: "{i}", data_type: {t}, dims: [-1], optional: true}}' for i, _, t in IO_TENSORS
    )
    outputs = ",\n  ".join(f'{{name: "{o}", data_type: {t}, dims: [-1]}}' for _, o, t in IO_TENSORS)
    maps = "".join(
        f'    input_map {{ key: "{i}__{index}" value: "{i}" }}\n' for i, _, _ in IO_TENSORS
    )
    maps += "".join(
        f'    output_map {{ key: "{o}__{index}" value: "{o}" }}\n' for _, o, _ in IO_TENSORS
    )
    return (
        f'name: "{model.name}"\n'
        'platform: "ensemble"\n'
        f"max_batch_size: {model.max_batch}\n"
        f"input [\n  {inputs}\n]\n"
        f"output [\n  {outputs}\n]\n"
        "ensemble_scheduling {\n  step [{\n"
        f'    model_name: "{DEVICE_MODEL}"\n    model_version: -1\n{maps}'
        "  }]\n}\n"
    )


def slots_file(control_file: Path) -> Path:
    """The shared slot file of the server whose control file is ``control_file``."""
    return control_file.with_name("slots.bin")


def reset_slots(path: Path, instances: int) -> None:
    """(Re)create a server's slot file: ``instances`` free slots, never used.

    Layout: per slot three little-endian float64, ``busy`` (0/1), ``ideal_end`` and ``end``
    (``CLOCK_MONOTONIC`` seconds); the model locks it with ``flock``. Written before the server
    starts (and restarts, so a crash leaves no slot marked busy).
    """
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(struct.pack("<" + "d" * (3 * instances), *([0.0, -1e18, -1e18] * instances)))
    os.replace(tmp, path)


def busy_slots(path: Path) -> int:
    """Executions in progress on a server: the busy flags of its slot file (0 when absent).

    Triton's ``nv_inference_pending_request_count`` counts queued requests only; a request the
    device is executing shows only here (measured: four 300 ms requests on one slot read pending
    3, 2, 1, 0 while the fourth still ran).
    """
    try:
        raw = path.read_bytes()
    except OSError:
        return 0
    n = len(raw) // 24
    values = struct.unpack("<" + "d" * (3 * n), raw[: 24 * n])
    return sum(1 for i in range(n) if values[3 * i] != 0.0)


def write_repository(spec: ServerSpec, root: Path, control_file: Path) -> Path:
    """Write the model repository of one server under ``root`` (replacing what is there).

    Args:
        spec: the server.
        root: directory to create; it will hold ``_emulated_device/config.pbtxt`` and
            ``_emulated_device/1/model.py``, and ``<model>/config.pbtxt`` (an ensemble) and an
            empty ``<model>/1/`` for every model.
        control_file: the server's control file (slowdown factor, clock origin), read by the
            model on every request.

    Returns:
        ``root``.
    """
    if root.exists():
        shutil.rmtree(root)
    reset_slots(slots_file(control_file), spec.instances)
    device = root / DEVICE_MODEL
    (device / "1").mkdir(parents=True)
    shutil.copyfile(MODEL_SOURCE, device / "1" / "model.py")
    (device / "config.pbtxt").write_text(_device_config(spec, control_file), encoding="utf-8")
    for index, model in enumerate(spec.models):
        (root / model.name / "1").mkdir(parents=True)
        (root / model.name / "config.pbtxt").write_text(
            _ensemble_config(model, index), encoding="utf-8"
        )
    return root
