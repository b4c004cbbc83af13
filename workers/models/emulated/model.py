"""Emulated model: a small real computation that completes at a profiled latency.

Runs inside Triton's python backend stub (one process per model instance), with the venv's
interpreter. It is copied as ``<repo>/<model>/1/model.py`` by ``workers.repository``; its
parameters come from the model config (``parameters.emulation``, a JSON document written by
``workers.repository.EmulationSpec``).

Computation (so outputs are checkable), every input optional, batch on the first dimension:

* ``INPUT0`` FP32 ``[B, N]`` -> ``OUTPUT0`` FP32 ``[B, N]`` = ``INPUT0 * 2``
* ``INPUT1`` INT64 ``[B, N]`` -> ``OUTPUT1`` INT64 ``[B, N]`` = ``INPUT1 * 2``
* ``INPUT2`` BYTES ``[B, N]`` -> ``OUTPUT2`` BYTES ``[B, N]`` = each element repeated twice

A request carries at least one of them; all present inputs share B.

Latency: the execution (which holds one of the server's instance slots, see the Triton rate
limiter in the config) lasts ``exp(mu_B + sigma_B * z)`` ms, z ~ N(0, 1), where ``(mu_B, sigma_B)``
is the profile's log-normal fit at batch B (``Profile.lognormal``, precomputed by the launcher),
times the pool's speed at the current time since fleet start, times the slowdown factor in the
server's control file (fault injection). The control file (JSON ``{"slowdown": f,
"origin_epoch": t}``) also holds the fleet clock origin, so the fleet can restart its clock
(e.g. when a benchmark starts its trace) without reloading models. The time spent computing counts towards that latency.
"""

import json
import math
import os
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
        self.model = spec["model"]
        self.table = {int(b): (float(mu), float(s)) for b, (mu, s) in spec["lognormal"].items()}
        self.max_batch = max(self.table)
        self.speed = sorted((float(at), float(f)) for at, f in spec["speed"])
        self.control = spec.get("control_file") or ""
        self._control_key = None
        self._slowdown = 1.0
        self._origin = None
        instance = args.get("model_instance_name", "0")
        self.rng = np.random.default_rng([int(spec.get("seed", 0)), zlib.crc32(instance.encode())])

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
            self._slowdown, self._origin = 1.0, None
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
        except (OSError, ValueError, TypeError, AttributeError):
            self._slowdown, self._origin = 1.0, None
        self._control_key = key

    def service_ms(self, batch):
        """True service time in ms of one request of ``batch`` items."""
        self._read_control()
        mu, sigma = self.table[min(max(batch, 1), self.max_batch)]
        z = self.rng.standard_normal() if sigma > 0 else 0.0
        return math.exp(mu + sigma * z) * self._speed_now() * self._slowdown

    def _compute(self, request):
        outputs = []
        batch = None
        for in_name, out_name in _PAIRS:
            tensor = pb_utils.get_input_tensor_by_name(request, in_name)
            if tensor is None:
                continue
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
        if batch is None:
            raise ValueError(
                f"model {self.model} needs at least one of INPUT0 (FP32), INPUT1 (INT64), "
                "INPUT2 (BYTES)"
            )
        return outputs, batch

    def execute(self, requests):
        """Answer each request after its emulated service time (holding this instance)."""
        responses = []
        for request in requests:
            start = time.perf_counter()
            try:
                outputs, batch = self._compute(request)
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            deadline = start + self.service_ms(batch) / 1000.0
            remaining = deadline - time.perf_counter()
            if remaining > 0:
                time.sleep(remaining)
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
