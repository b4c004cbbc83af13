"""Locust load for SynergAI Gateway: REST and gRPC users, a scenario's model mix, load shapes.

Run headless (``python -m loadtest.run_locust`` wraps this, starting a stack when no host is
given)::

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8080 \
        --run-time 30s -u 16 -r 8 --shape steps --csv out/locust RestUser

Options (each also an environment variable):

* ``--scenario`` / ``SYNERGAI_SCENARIO``: scenario YAML whose workload gives the model mix
  (streams drawn in proportion to ``rate_rps``) and the hints each request carries
  (``x-slo-ms``, ``x-priority``, ``x-category``; ``time_scale`` applied to the SLO);
* ``--shape`` / ``SYNERGAI_SHAPE``: ``constant`` (``-u``), ``steps``, ``bursts``, ``diurnal``
  (``loadtest/shapes.py``), all bounded by ``--run-time``;
* ``--user-rps`` / ``SYNERGAI_USER_RPS``: requests per second per user (``constant_throughput``);
* ``--grpc-target`` / ``SYNERGAI_GRPC_TARGET``: ``host:port`` of the gRPC front door (default:
  the ``--host`` name on port 8081).

Pick user classes by name on the command line (``RestUser``, ``GrpcUser``); without names both
run, REST three times as often. A request counts as a locust *failure* when it is shed (429 /
RESOURCE_EXHAUSTED), fails, or answers after its SLO ("late"), so locust's failure ratio is the
SLO violation ratio.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import grpc  # noqa: E402
from locust import LoadTestShape, User, constant_throughput, events, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402

from loadtest import shapes  # noqa: E402
from loadtest.bench_workload import RequestMix  # noqa: E402
from loadtest.client import Payloads  # noqa: E402

_HERE = Path(__file__).resolve().parent
_DEFAULT_SCENARIO = _HERE / "scenarios" / "demo.yaml"
_MIX: dict[str, RequestMix] = {}
_PAYLOADS = Payloads()


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument(
        "--scenario",
        type=str,
        env_var="SYNERGAI_SCENARIO",
        default=str(_DEFAULT_SCENARIO),
        help="Scenario YAML: model mix and SLO hints",
    )
    parser.add_argument(
        "--shape",
        type=str,
        env_var="SYNERGAI_SHAPE",
        default="constant",
        choices=sorted(shapes.SHAPES),
        help="Load shape (users over time)",
    )
    parser.add_argument(
        "--user-rps",
        type=float,
        env_var="SYNERGAI_USER_RPS",
        default=2.0,
        help="Requests per second per user",
    )
    parser.add_argument(
        "--grpc-target",
        type=str,
        env_var="SYNERGAI_GRPC_TARGET",
        default="",
        help="gRPC host:port (default: --host's name, port 8081)",
    )


def _mix(environment):
    path = environment.parsed_options.scenario if environment.parsed_options else ""
    path = path or str(_DEFAULT_SCENARIO)
    if path not in _MIX:
        _MIX[path] = RequestMix.from_scenario(Path(path))
    return _MIX[path]


def _user_rps(environment):
    opts = environment.parsed_options
    return float(getattr(opts, "user_rps", 2.0) or 2.0) if opts else 2.0


def _paced(user):
    return constant_throughput(_user_rps(user.environment))(user)


class RestUser(FastHttpUser):
    """KServe v2 REST ``POST /v2/models/{m}/infer`` with hint headers."""

    weight = 3
    network_timeout = 30.0
    connection_timeout = 5.0

    def wait_time(self):
        return _paced(self)

    def on_start(self):
        self._rng = random.Random()
        self._mix = _mix(self.environment)

    @task
    def infer(self):
        w = self._mix.pick(self._rng)
        headers = {"content-type": "application/json", **self._mix.hints(w)}
        body = _PAYLOADS.json_body(w.model, w.batch)
        start = time.perf_counter()
        with self.client.post(
            f"/v2/models/{w.model}/infer",
            data=body,
            headers=headers,
            name=f"infer {w.model}",
            catch_response=True,
        ) as resp:
            ms = (time.perf_counter() - start) * 1000.0
            if resp.status_code == 200:
                if ms > w.slo_ms:
                    resp.failure(f"late: over slo {w.slo_ms:g} ms")
                else:
                    resp.success()
            elif resp.status_code == 429:
                resp.failure("shed (429)")
            else:
                resp.failure(f"HTTP {resp.status_code}")


class GrpcUser(User):
    """KServe v2 gRPC ``ModelInfer`` with hint metadata; fires locust request events."""

    weight = 1
    abstract = False

    def wait_time(self):
        return _paced(self)

    def __init__(self, environment):
        super().__init__(environment)
        target = environment.parsed_options.grpc_target if environment.parsed_options else ""
        if not target:
            host = urlsplit(self.host or "http://127.0.0.1:8080").hostname or "127.0.0.1"
            target = f"{host}:8081"
        from tritonclient.grpc import service_pb2_grpc

        self._channel = grpc.insecure_channel(target)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._rng = random.Random()
        self._mix = _mix(environment)

    def on_stop(self):
        self._channel.close()

    @task
    def infer(self):
        w = self._mix.pick(self._rng)
        req = _PAYLOADS.grpc_request(w.model, w.batch)
        md = tuple(self._mix.hints(w).items())
        start = time.perf_counter()
        exc = None
        length = 0
        try:
            resp = self._stub.ModelInfer(req, metadata=md, timeout=30.0)
            length = resp.ByteSize()
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                exc = RuntimeError("shed (RESOURCE_EXHAUSTED)")
            else:
                exc = RuntimeError(f"gRPC {code.name if code else err}")
        ms = (time.perf_counter() - start) * 1000.0
        if exc is None and ms > w.slo_ms:
            exc = RuntimeError(f"late: over slo {w.slo_ms:g} ms")
        self.environment.events.request.fire(
            request_type="grpc",
            name=f"infer {w.model}",
            response_time=ms,
            response_length=length,
            exception=exc,
            context={"model": w.model, "slo_ms": w.slo_ms},
        )


class SelectedShape(LoadTestShape):
    """The shape named by ``--shape``, sized by ``-u`` and bounded by ``--run-time``."""

    use_common_options = True

    def __init__(self):
        super().__init__()
        self._shape = None

    def tick(self):
        if self._shape is None:
            opts = self.runner.environment.parsed_options
            run_time = float(opts.run_time) if opts and opts.run_time else float("inf")
            users = int(opts.num_users or 8) if opts else 8
            spawn = float(opts.spawn_rate or 10.0) if opts else 10.0
            name = getattr(opts, "shape", "constant") if opts else "constant"
            self._shape = shapes.make_shape(name, users, run_time, spawn_rate=spawn)
            self._shape.start_time = self.start_time
        self._shape.start_time = self.start_time
        return self._shape.tick()


if os.environ.get("SYNERGAI_LOCUST_NO_SHAPE"):
    del SelectedShape
