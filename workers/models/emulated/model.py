"""Emulated model: a small real computation that completes at a profiled latency.

Runs inside Triton's python backend stub (one process per model instance), with the venv's
interpreter. It is copied as ``<repo>/_emulated_device/1/model.py`` by ``workers.repository``:
one model per server, the device, that every public model reaches through an ensemble, with
input ``INPUTk`` of the ``i``-th model renamed ``INPUTk__i`` (outputs likewise), so all requests
share one FIFO queue. Its parameters come from the model config (``parameters.emulation``, a
JSON document written by ``workers.repository``: ``models: [{name, lognormal}]``; a spec with
a single ``model`` and ``lognormal`` and plain tensor names also works).

Computation (so outputs are checkable), every input optional, batch on the first dimension:

* ``INPUT0`` FP32 ``[B, N]`` -> ``OUTPUT0`` FP32 ``[B, N]`` = ``INPUT0 * 2``
* ``INPUT1`` INT64 ``[B, N]`` -> ``OUTPUT1`` INT64 ``[B, N]`` = ``INPUT1 * 2``
* ``INPUT2`` BYTES ``[B, N]`` -> ``OUTPUT2`` BYTES ``[B, N]`` = each element repeated twice

A request carries at least one of them; all present inputs share B.

Latency: the execution (which holds one of the server's instance slots, see the Triton rate
limiter in the config) lasts ``exp(mu_B + sigma_B * z)`` ms, z ~ N(0, 1), where ``(mu_B, sigma_B)``
is the profile's log-normal fit at batch B (``Profile.lognormal``, precomputed by the launcher),
times the pool's speed at the current time since fleet start, times the slowdown factor in the
server's control file (fault injection). With ``"fail": "message"`` in the control file every
execution fails with that message instead (a broken backend: Triton answers 500 / ``INTERNAL``).
The control file (JSON ``{"slowdown": f, "origin_epoch": t}``) also holds the fleet clock origin, so the fleet can restart its clock
(e.g. when a benchmark starts its trace) without reloading models. The time spent computing counts towards that latency.

Queueing without overhead build-up: Triton gives a waiting request its slot ~1 ms after the
previous execution on that slot returned (response and request IPC, the rate limiter). The
server's slots are mirrored in a small shared file (``slots_file``: per slot, busy flag, ideal
end and real end, ``CLOCK_MONOTONIC`` seconds, under ``flock``); an execution that begins within
``queue_gap_ms`` of the most recent release on a free slot starts, for the emulation, at that
slot's ideal end (the previous deadline), at most ``catchup_ms`` back. So back to back the
server completes one request per service time, as the profile and the simulator's FIFO server
say. ``queue_gap_ms: 0`` turns it off.

Debugging: with ``SYNERGAI_EMULATION_TRACE=<dir>`` in the server's environment every execution
appends one JSON line to ``<dir>/<server>.jsonl`` (epoch seconds: ``t0`` execute start,
``anchor`` emulated start, ``deadline``, ``end``; ``service_ms``, ``slot``, ``gap_ms`` since
the slot's release).
"""

import fcntl
import json
import math
import os
import struct
import time
import zlib

import numpy as np
import triton_python_backend_utils as pb_utils

_PAIRS = (("INPUT0", "OUTPUT0"), ("INPUT1", "OUTPUT1"), ("INPUT2", "OUTPUT2"))


class TritonPythonModel:
    """Triton python-backend entry point (sequential: one request at a time per instance)."""

    def initialize(self, args):
        """Read the emulation spec from the model config and seed this instance's RNG."""
        config = json.loads(args["model_config"])
        spec = json.loads(config["parameters"]["emulation"]["string_value"])
        # The device of a server (one entry per model, inputs suffixed "__<index>"), or one
        # model on its own (plain input names).
        models = spec.get("models") or [{"name": spec["model"], "lognormal": spec["lognormal"]}]
        suffixed = "models" in spec
        self.names = [m["name"] for m in models]
        self.tables = [
            {int(b): (float(mu), float(s)) for b, (mu, s) in m["lognormal"].items()}
            for m in models
        ]
        self.pairs = [
            tuple((i + f"__{k}", o + f"__{k}") if suffixed else (i, o) for i, o in _PAIRS)
            for k in range(len(models))
        ]
        self.model = self.names[0]
        self.speed = sorted((float(at), float(f)) for at, f in spec["speed"])
        self.control = spec.get("control_file") or ""
        self._control_key = None
        self._slowdown = 1.0
        self._fail = ""
        self._origin = None
        instance = args.get("model_instance_name", "0")
        self.instance = instance
        self.server = spec.get("server", "")
        self.rng = np.random.default_rng([int(spec.get("seed", 0)), zlib.crc32(instance.encode())])
        self.queue_gap = float(spec.get("queue_gap_ms", 0.0)) / 1000.0
        self.catchup = float(spec.get("catchup_ms", 0.0)) / 1000.0
        self._n_slots = int(spec.get("instances", 1))
        self._slots_fmt = "<" + "d" * (3 * self._n_slots)
        self._slots_bytes = 24 * self._n_slots
        self._slots_fd = None
        slots = spec.get("slots_file") or ""
        if slots:
            try:
                self._slots_fd = os.open(slots, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(self._slots_fd, fcntl.LOCK_EX)
                try:  # a repository baked without a launcher (the worker image): make it
                    if os.fstat(self._slots_fd).st_size < self._slots_bytes:
                        free = [0.0, -1e18, -1e18] * self._n_slots
                        os.pwrite(self._slots_fd, struct.pack(self._slots_fmt, *free), 0)
                finally:
                    fcntl.flock(self._slots_fd, fcntl.LOCK_UN)
            except OSError:
                self._slots_fd = None
        self._epoch = time.time() - time.monotonic()
        self._trace_fd = None
        self._last_gap = None
        trace_dir = os.environ.get("SYNERGAI_EMULATION_TRACE")
        if trace_dir:
            name = (self.server or "server") + ".jsonl"
            self._trace_fd = os.open(
                os.path.join(trace_dir, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )

    def finalize(self):
        """Close the files this instance opened."""
        for fd in (self._slots_fd, self._trace_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._slots_fd = self._trace_fd = None

    def _speed_now(self):
        """Pool speed factor now: the last step at or before t, 1.0 before the first step."""
        if not self.speed:
            return 1.0
        t = 0.0 if self._origin is None else time.time() - self._origin
        factor = 1.0
        for at, f in self.speed:
            if at <= t:
                factor = f
            else:
                break
        return factor

    def _read_control(self):
        """Refresh slowdown and clock origin from the control file when the file changed.

        The file is replaced atomically (write + rename) by the fleet, so a changed inode,
        mtime or size means new content; an unchanged file costs one ``stat`` per request.
        """
        if not self.control:
            return
        try:
            st = os.stat(self.control)
        except OSError:
            self._control_key = None
            self._slowdown, self._origin, self._fail = 1.0, None, ""
            return
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._control_key:
            return
        try:
            with open(self.control, encoding="utf-8") as fh:
                doc = json.load(fh)
            self._slowdown = float(doc.get("slowdown", 1.0))
            origin = doc.get("origin_epoch")
            self._origin = None if origin is None else float(origin)
            self._fail = str(doc.get("fail") or "")
        except (OSError, ValueError, TypeError, AttributeError):
            self._slowdown, self._origin, self._fail = 1.0, None, ""
        self._control_key = key

    def service_ms(self, batch, model=0):
        """True service time in ms of one request of ``batch`` items of model ``model``."""
        self._read_control()
        table = self.tables[model]
        mu, sigma = table[min(max(batch, 1), max(table))]
        z = self.rng.standard_normal() if sigma > 0 else 0.0
        return math.exp(mu + sigma * z) * self._speed_now() * self._slowdown

    def _take_slot(self, t0):
        """Claim a slot of the server; return ``(slot, anchor)``: when this execution starts.

        Triton hands the slot of a request that was waiting to it about a millisecond after
        the previous execution on that slot returned (response IPC, rate limiter, request
        IPC). A real device starts the next waiting request when the previous one ends, so
        when this execution begins within ``queue_gap`` of the most recent release its
        emulated start is the previous execution's *ideal* end (its deadline), not now: the
        overhead and any sleep overshoot do not pile up in a queue. Otherwise (the server was
        idle) it starts now. The catch-up is bounded by ``catchup``, so a long stall of the
        machine is not repaid by answering a whole queue at once.
        """
        self._last_gap = None
        if self._slots_fd is None:
            return None, t0
        fcntl.flock(self._slots_fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self._slots_fd, self._slots_bytes, 0)
            if len(raw) < self._slots_bytes:
                return None, t0
            vals = struct.unpack(self._slots_fmt, raw)
            best, best_end = None, -math.inf
            for i in range(self._n_slots):
                busy, _, end = vals[3 * i : 3 * i + 3]
                if not busy and end > best_end:
                    best, best_end = i, end
            if best is None:  # inconsistent file (e.g. a stub died mid-execution): no anchor
                return None, t0
            ideal = vals[3 * best + 1]
            self._last_gap = (t0 - best_end) * 1000.0
            anchor = t0
            if self.queue_gap > 0 and 0.0 <= t0 - best_end <= self.queue_gap:
                anchor = min(t0, max(ideal, t0 - self.catchup))
            os.pwrite(self._slots_fd, struct.pack("<ddd", 1.0, ideal, best_end), 24 * best)
            return best, anchor
        finally:
            fcntl.flock(self._slots_fd, fcntl.LOCK_UN)

    def _release_slot(self, slot, deadline, end):
        """Mark ``slot`` free, ideally since ``deadline``, really since ``end``."""
        if slot is None:
            return
        fcntl.flock(self._slots_fd, fcntl.LOCK_EX)
        try:
            os.pwrite(self._slots_fd, struct.pack("<ddd", 0.0, deadline, end), 24 * slot)
        finally:
            fcntl.flock(self._slots_fd, fcntl.LOCK_UN)

    def _compute(self, request):
        """Outputs, batch size and model index of one request (ValueError: bad request)."""
        for k, pairs in enumerate(self.pairs):
            tensors = [
                (pb_utils.get_input_tensor_by_name(request, i), o) for i, o in pairs
            ]
            if any(t is not None for t, _ in tensors):
                return (*self._compute_model(tensors), k)
        raise ValueError(
            f"model {self.model} needs at least one of INPUT0 (FP32), INPUT1 (INT64), "
            "INPUT2 (BYTES)"
        )

    def _compute_model(self, tensors):
        outputs = []
        batch = None
        for tensor, out_name in tensors:
            if tensor is None:
                continue
            in_name = out_name.replace("OUTPUT", "INPUT")
            x = tensor.as_numpy()
            b = int(x.shape[0]) if x.ndim else 1
            if batch is not None and b != batch:
                raise ValueError(f"inputs disagree on batch size: {batch} vs {b} ({in_name})")
            batch = b
            if x.dtype == np.object_:
                y = np.vectorize(
                    lambda v: (v if isinstance(v, bytes) else str(v).encode()) * 2, otypes=[object]
                )(x) if x.size else x
            else:
                y = x * 2
            outputs.append(pb_utils.Tensor(out_name, y))
        return outputs, batch

    def execute(self, requests):
        """Answer each request after its emulated service time (holding this instance)."""
        self._read_control()
        if self._fail:  # fault injection: a broken backend (Triton: 500 / INTERNAL)
            return [
                pb_utils.InferenceResponse(error=pb_utils.TritonError(self._fail))
                for _ in requests
            ]
        responses = []
        t0 = time.monotonic()
        slot, anchor = self._take_slot(t0)
        deadline = anchor
        try:
            for request in requests:
                start = max(deadline, anchor)  # requests of one call run one after another
                try:
                    outputs, batch, model = self._compute(request)
                except ValueError as exc:
                    responses.append(
                        pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                    )
                    continue
                service = self.service_ms(batch, model)
                deadline = start + service / 1000.0
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
                if self._trace_fd is not None:
                    self._trace(t0, start, deadline, service, batch, slot, model)
        finally:
            self._release_slot(slot, deadline, time.monotonic())
        return responses

    def _trace(self, t0, start, deadline, service, batch, slot, model):
        e = self._epoch
        line = json.dumps(
            {
                "model": self.names[model],
                "instance": self.instance,
                "slot": slot,
                "t0": t0 + e,
                "anchor": start + e,
                "deadline": deadline + e,
                "end": time.monotonic() + e,
                "service_ms": service,
                "batch": batch,
                "gap_ms": self._last_gap,
            }
        )
        try:
            os.write(self._trace_fd, (line + "\n").encode())
        except OSError:
            pass
