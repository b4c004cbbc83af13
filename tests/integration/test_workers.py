"""Real Triton servers from the launcher: outputs, latency emulation, the shared slot limit,
the emulated network, faults, and reaping.

One module-scoped fleet of two servers keeps the start/stop cost (~1 s + ~3 s) paid once:
``one-0``: instances=1, models m1 and m2 (10 ms each, deterministic), no rtt;
``two-0``: instances=2, model m1 (10 ms), rtt 20 ms.
Both also serve ``m0`` (0.05 ms): the baseline. The emulation's lower bounds are behaviour
(a model never answers before its profiled time) and hold under any load. Upper bounds are
derived from what an (almost) free ``m0`` request costs on the same path in the same run, so a
loaded machine widens them instead of failing them; on a quiet machine they still catch a
missing slot limit (x2) or a doubled delay. Single requests are timed as the fastest of a few,
each after a pause longer than the emulation's queue gap (3 ms), so none is anchored on the
previous one's deadline (which would let it end up to 1 ms early).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from workers.fleet import FaultInjector, WorkerSpec
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MS = 10.0
BASE = 0.05  # m0: the baseline, a request that costs only the path to the model and back


@pytest.fixture(scope="module")
def fleet(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, WorkerSpec]:
    directory = tmp_path_factory.mktemp("workers")
    path = write_scenario(
        directory,
        pools=[
            {
                "name": "one",
                "arch": "toy",
                "workers": 1,
                "instances": 1,
                "rtt_ms": 0,
                "models": ["m0", "m1", "m2"],
            },
            {
                "name": "two",
                "arch": "toy",
                "workers": 1,
                "instances": 2,
                "rtt_ms": 20,
                "models": ["m0", "m1"],
            },
        ],
        profiles={
            ("toy", "m0"): {1: (BASE, BASE), 4: (BASE, BASE)},
            ("toy", "m1"): {1: (MS, MS), 4: (MS, MS)},
            ("toy", "m2"): {1: (MS, MS), 4: (2 * MS, 2 * MS)},
        },
        faults=[
            {"at_s": 0.3, "pool": "one", "kind": "slowdown", "factor": 4.0, "for_s": 2.0},
            {"at_s": 0.3, "pool": "two", "worker": 0, "kind": "crash", "for_s": 1.0},
        ],
    )
    workers = triton_fleet(path, inject_faults=False)
    return {w.id: w for w in workers}


def _http_infer(w: WorkerSpec, model: str, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(w.http_url.removeprefix("http://"))
    try:
        inp = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer(model, [inp]).as_numpy("OUTPUT0")
        assert out is not None
        return out
    finally:
        client.close()


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def _fastest(n: int, fn: Callable[[], object]) -> float:
    """The fastest of n timed calls (ms), each after a 5 ms pause (past the 3 ms queue gap).

    A busy machine only ever adds time, so the fastest call is the least disturbed one.
    """
    best = float("inf")
    for _ in range(n):
        time.sleep(0.005)
        best = min(best, _timed(fn))
    return best


def _bound(expected_ms: float, base_ms: float, base_floor_ms: float = 0.0) -> float:
    """Upper bound for a call expected to take ``expected_ms``: plus 8 ms and three times the
    overhead the baseline showed in this run (its time beyond its own ``base_floor_ms``)."""
    return expected_ms + 8.0 + 3.0 * max(0.0, base_ms - base_floor_ms)


def _concurrent(n: int, fn: Callable[[int], object]) -> float:
    """Run ``fn(i)`` for i < n in n threads at once; wall time in ms."""
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(timeout=30)
    start = time.perf_counter()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return (time.perf_counter() - start) * 1000


def _concurrent_vs_baseline(
    fn: Callable[[int], object], baseline: Callable[[int], object]
) -> tuple[float, float]:
    """20 calls at once of ``fn`` (the faster of two rounds) and of ``baseline`` (the slower
    of a round before and one after): the wall time and what the same burst costs for free."""
    base = _concurrent(20, baseline)
    wall = min(_concurrent(20, fn), _concurrent(20, fn))
    return wall, max(base, _concurrent(20, baseline))


def test_worker_specs(fleet: dict[str, WorkerSpec]) -> None:
    one, two = fleet["one-0"], fleet["two-0"]
    assert (one.pool, one.arch, one.instances) == ("one", "toy", 1)
    assert one.models == ("m0", "m1", "m2")
    assert one.http_url == one.direct_http_url  # no rtt, no relay
    assert two.http_url != two.direct_http_url and two.rtt_ms == 20
    assert two.metrics_url.endswith("/metrics")


def test_outputs_http_and_grpc_all_dtypes(fleet: dict[str, WorkerSpec]) -> None:
    w = fleet["two-0"]  # through the relay: bytes must come back intact
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    np.testing.assert_array_equal(_http_infer(w, "m1", x), x * 2)

    client = grpcclient.InferenceServerClient(w.grpc_url)
    try:
        ints = np.array([[1, -2, 2**40]], dtype=np.int64)
        strs = np.array([[b"ab", b""], [b"\x00z", b"q"]], dtype=np.object_)
        inputs = [grpcclient.InferInput("INPUT1", [1, 3], "INT64")]
        inputs[0].set_data_from_numpy(ints)
        res = client.infer("m1", inputs)
        np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), ints * 2)
        inputs = [grpcclient.InferInput("INPUT2", [2, 2], "BYTES")]
        inputs[0].set_data_from_numpy(strs)
        res = client.infer("m1", inputs)
        assert res.as_numpy("OUTPUT2").tolist() == [[b"abab", b""], [b"\x00z\x00z", b"qq"]]
        fp = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
        fp.set_data_from_numpy(np.array([[0.25, -1.0]], dtype=np.float32))
        res = client.infer("m1", [fp])
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), [[0.5, -2.0]])
    finally:
        client.close()


def test_bad_requests_are_refused(fleet: dict[str, WorkerSpec]) -> None:
    w = fleet["one-0"]
    client = httpclient.InferenceServerClient(w.http_url.removeprefix("http://"))
    try:
        # Above max_batch (4): Triton refuses the request (the gateway never splits).
        big = httpclient.InferInput("INPUT0", [5, 1], "FP32")
        big.set_data_from_numpy(np.zeros((5, 1), dtype=np.float32))
        with pytest.raises(Exception, match="batch"):
            client.infer("m1", [big])
        with pytest.raises(Exception, match="input"):
            client.infer("m1", [])
    finally:
        client.close()


def test_latency_follows_profile_and_batch(fleet: dict[str, WorkerSpec]) -> None:
    w = fleet["one-0"]
    client = grpcclient.InferenceServerClient(w.grpc_url)
    try:

        def call(model: str, batch: int) -> None:
            inp = grpcclient.InferInput("INPUT0", [batch, 2], "FP32")
            inp.set_data_from_numpy(np.zeros((batch, 2), dtype=np.float32))
            client.infer(model, [inp])

        call("m0", 1)  # connection set-up: not measured
        base = _fastest(8, lambda: call("m0", 4))
        b1 = _fastest(8, lambda: call("m2", 1))
        b4 = _fastest(8, lambda: call("m2", 4))
        b2 = _fastest(8, lambda: call("m2", 2))
        base = max(base, _fastest(8, lambda: call("m0", 4)))  # before and after: the larger
    finally:
        client.close()
    print(f"\nbaseline {base:.2f} ms; m2 batch 1/2/4: {b1:.2f}/{b2:.2f}/{b4:.2f} ms")
    # lower bounds with 0.5 ms of slack: the model's sleep and the client's clock are
    # different timers (CI measured 13.328 ms for a 13.333 ms point)
    assert MS - 0.5 <= b1 < _bound(MS, base)
    assert 2 * MS - 0.5 <= b4 < _bound(2 * MS, base)
    assert MS * 4 / 3 - 0.5 <= b2 < _bound(MS * 4 / 3, base)  # linear between 1 and 4


def test_one_slot_shared_by_all_models(fleet: dict[str, WorkerSpec]) -> None:
    """20 concurrent 10 ms requests over two models on instances=1: ~200 ms, not ~100."""
    w = fleet["one-0"]
    x = np.ones((1, 2), dtype=np.float32)
    wall, base = _concurrent_vs_baseline(lambda i: _http_infer(w, ("m1", "m2")[i % 2], x),
                                         lambda i: _http_infer(w, "m0", x))  # fmt: skip
    print(f"\n20 at once: {wall:.1f} ms (baseline {base:.1f} ms)")
    assert 20 * MS <= wall < (20 * MS + base) * 1.5  # one at a time (x2 if it were two)


def test_two_slots_and_network_delay(fleet: dict[str, WorkerSpec]) -> None:
    """instances=2, rtt 20 ms: one request ~30 ms; 20 at once ~20 + 100 ms."""
    w = fleet["two-0"]
    client = grpcclient.InferenceServerClient(w.grpc_url)
    inp = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
    inp.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
    try:
        client.infer("m1", [inp])  # connection set-up costs round trips; not measured
        base = _fastest(6, lambda: client.infer("m0", [inp]))
        single = _fastest(6, lambda: client.infer("m1", [inp]))
    finally:
        client.close()
    assert 20 + MS <= single < _bound(20 + MS, base, base_floor_ms=20)
    # Direct to Triton: no network delay.
    direct = grpcclient.InferenceServerClient(w.direct_grpc_url)
    try:
        direct.infer("m1", [inp])
        base_direct = _fastest(5, lambda: direct.infer("m0", [inp]))
        assert _fastest(5, lambda: direct.infer("m1", [inp])) < _bound(MS, base_direct)
    finally:
        direct.close()
    assert base_direct < base - 10  # the relay's 20 ms are not on the direct path
    x = np.ones((1, 2), dtype=np.float32)
    wall, base_wall = _concurrent_vs_baseline(
        lambda i: _http_infer(w, "m1", x), lambda i: _http_infer(w, "m0", x)
    )
    print(f"\nsingle {single:.1f} ms (baseline {base:.1f}, direct {base_direct:.1f}); "
          f"20 at once {wall:.1f} ms (baseline {base_wall:.1f})")  # fmt: skip
    # two at a time (x2 if it were one), the rtt once per request
    assert 20 + 10 * MS <= wall < (10 * MS + base_wall) * 1.5


def test_queue_metrics_show_waiting(fleet: dict[str, WorkerSpec]) -> None:
    import urllib.request

    text = urllib.request.urlopen(fleet["one-0"].metrics_url, timeout=5).read().decode()
    queue = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_queue_duration_us{")
    ]
    assert sum(queue) > 0  # the shared-slot test queued requests in Triton's own queue


def test_faults_on_the_fleet_clock(
    fleet: dict[str, WorkerSpec], triton_fleet: FleetFactory
) -> None:
    """Slowdown x4 on one-0 from 0.3 s to 2.3 s; two-0 crashed at 0.3 s, back after 1.0 s.

    The test follows the injector's log of applied faults rather than the clock, so a loaded
    machine that applies them late does not make it measure the wrong phase.
    """
    f = triton_fleet.last
    faults = f.faults()
    assert {(x.kind, x.server) for x in faults} == {("slowdown", "one-0"), ("crash", "two-0")}
    injector = FaultInjector(f, faults)
    one, two = fleet["one-0"], fleet["two-0"]
    x = np.ones((1, 2), dtype=np.float32)

    def wait_applied(*events: tuple[str, str, str]) -> None:
        deadline = time.monotonic() + 20
        while not set(events) <= {(p, k, s) for _, p, k, s in injector.applied}:
            assert time.monotonic() < deadline, (events, injector.applied)
            time.sleep(0.01)

    injector.start(time.monotonic())
    try:
        wait_applied(("begin", "slowdown", "one-0"), ("begin", "crash", "two-0"))
        with pytest.raises(Exception):  # noqa: B017 - connection refused/reset, any form
            _http_infer(two, "m1", x)
        assert not f.server("two-0").running
        base = _fastest(3, lambda: _http_infer(one, "m0", x))  # x4 of 0.05 ms: still ~free
        slow = _fastest(3, lambda: _http_infer(one, "m1", x))
        ended = ("end", "slowdown", "one-0") in {(p, k, s) for _, p, k, s in injector.applied}
        assert not ended, "measured past the slowdown: the machine stalled for over 1.5 s"
        assert 4 * MS - 0.5 <= slow < _bound(4 * MS, base) + 20  # a crash is handled meanwhile
        wait_applied(("end", "slowdown", "one-0"))
        # slowdown over: faster than the slowed model can ever answer
        assert _fastest(3, lambda: _http_infer(one, "m1", x)) < 4 * MS - 0.5
        deadline = time.monotonic() + 20
        while not f.server("two-0").running or not f.server("two-0").is_ready():
            assert time.monotonic() < deadline, "crashed server did not come back"
            time.sleep(0.05)
        np.testing.assert_array_equal(_http_infer(two, "m1", x), x * 2)  # same URL as before
    finally:
        injector.stop()
    phases = [(p, k, s) for _, p, k, s in injector.applied]
    assert phases.count(("end", "crash", "two-0")) == 1
    assert ("begin", "slowdown", "one-0") in phases


def test_manual_crash_and_recover(fleet: dict[str, WorkerSpec], triton_fleet: FleetFactory) -> None:
    f = triton_fleet.last
    old_pid = f.server("one-0").pid
    f.crash("one-0")
    assert old_pid is not None and not f.server("one-0").running
    f.recover("one-0")
    assert f.server("one-0").pid != old_pid
    x = np.ones((1, 1), dtype=np.float32)
    np.testing.assert_array_equal(_http_infer(fleet["one-0"], "m2", x), x * 2)


def test_run_workers_serves_until_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import psutil

    path = write_scenario(
        tmp_path,
        pools=[{"name": "p", "arch": "toy", "workers": 1, "rtt_ms": 0, "models": ["m"]}],
        profiles={("toy", "m"): {1: (2.0, 3.0)}},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.fleet", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("gateway config:") or not line:
                break
        assert lines[0].split()[:2] == ["id", "arch"], lines
        assert lines[1].startswith("p-0 ")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any(c.name() == "tritonserver" for c in children)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
