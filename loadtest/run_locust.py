"""A short, bounded headless locust run (``make loadtest``), against a stack it starts or a host.

Without ``--host`` it starts the same stack as ``synergai bench`` (embedded Valkey, the
scenario's emulated Triton fleet, one gateway with ``--policy``), runs locust headless against
it for ``--run-time`` seconds, prints locust's CSV summary and stops everything. With ``--host``
it only runs locust against that gateway (e.g. ``synergai demo`` in another terminal).

Locust runs as a child process (it monkey-patches its own process with gevent), killed if it
overruns ``run-time + 30 s``; CSVs go to ``--csv`` (``<prefix>_stats.csv``,
``<prefix>_failures.csv``, ``<prefix>_stats_history.csv``).

Usage (``synergai loadtest --help`` lists the same options)::

    synergai loadtest [--scenario F] [--run-time 20] [--users 8] [--shape steps]
        [--protocol http|grpc|both] [--host URL] [--csv PREFIX]
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from loadtest import scenarios

__all__ = [
    "DEFAULT_CSV",
    "MAX_RUN_TIME_S",
    "PROTOCOLS",
    "SHAPE_NAMES",
    "LocustProtocol",
    "Shape",
    "locust_command",
    "main",
    "run_loadtest",
    "summary",
]

Shape = Literal["bursts", "constant", "diurnal", "steps"]
"""The locustfile's ``--shape`` choices (``loadtest.shapes.SHAPES``; not imported here because
importing locust monkey-patches the importing process)."""
SHAPE_NAMES: tuple[str, ...] = get_args(Shape)
LocustProtocol = Literal["both", "grpc", "http"]
"""``--protocol``: which locust user classes run."""
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_SCENARIO = scenarios.resolve(None)
_USERS = {"http": ["RestUser"], "grpc": ["GrpcUser"], "both": ["RestUser", "GrpcUser"]}
PROTOCOLS: tuple[str, ...] = get_args(LocustProtocol)
DEFAULT_CSV = Path("loadtest-results/locust")
"""``--csv`` prefix: ``<prefix>_stats.csv`` and friends."""
MAX_RUN_TIME_S = 600
"""The longest ``--run-time`` (the run is always bounded)."""


def locust_command(
    host: str,
    *,
    run_time_s: int,
    users: int,
    spawn_rate: float,
    shape: str,
    protocol: str,
    csv_prefix: Path,
    grpc_target: str = "",
    scenario: Path = DEFAULT_SCENARIO,
    user_rps: float = 2.0,
) -> list[str]:
    """The headless locust command line."""
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--run-time",
        f"{run_time_s}s",
        "-u",
        str(users),
        "-r",
        f"{spawn_rate:g}",
        "--stop-timeout",
        "5",
        "--csv",
        str(csv_prefix),
        "--csv-full-history",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--scenario",
        str(scenario),
        "--shape",
        shape,
        "--user-rps",
        f"{user_rps:g}",
        "--loglevel",
        "WARNING",
    ]
    if grpc_target:
        cmd += ["--grpc-target", grpc_target]
    return cmd + _USERS[protocol]


def summary(csv_prefix: Path) -> list[dict[str, str]]:
    """Rows of ``<prefix>_stats.csv`` (one per request name, plus ``Aggregated``)."""
    path = Path(f"{csv_prefix}_stats.csv")
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _print_summary(rows: Sequence[dict[str, str]]) -> None:
    head = f"{'type':<6} {'name':<22} {'reqs':>6} {'fails':>6} {'req/s':>7} {'p50':>6} {'p99':>6}"
    print(head)
    for r in rows:
        print(
            f"{r.get('Type', ''):<6} {r.get('Name', ''):<22} {r.get('Request Count', ''):>6} "
            f"{r.get('Failure Count', ''):>6} {float(r.get('Requests/s') or 0):>7.1f} "
            f"{r.get('50%', ''):>6} {r.get('99%', ''):>6}"
        )
    print("(fails = shed, errors and answers later than their SLO; times in ms)")


def _run(cmd: list[str], run_time_s: int) -> int:
    env = dict(os.environ)
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)  # locust itself needs gevent's patching
    root = str(LOCUSTFILE.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=run_time_s + 30)
    except subprocess.TimeoutExpired:
        print("locust overran its run time; killing it", file=sys.stderr)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return 1
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loadtest.run_locust``: the same options as ``synergai loadtest``."""
    p = argparse.ArgumentParser(prog="python -m loadtest.run_locust", description=__doc__)
    p.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    p.add_argument("--host", default="", help="gateway URL (default: start a stack)")
    p.add_argument("--grpc-target", default="", help="gateway gRPC host:port")
    p.add_argument("--run-time", type=int, default=20, help="seconds (bounded)")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--spawn-rate", type=float, default=8.0)
    p.add_argument("--user-rps", type=float, default=2.0, help="requests/s per user")
    p.add_argument("--shape", choices=SHAPE_NAMES, default="steps")
    p.add_argument("--protocol", choices=PROTOCOLS, default="http")
    p.add_argument("--policy", default="synergai", help="policy of the gateway it starts")
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = p.parse_args(argv)
    return run_loadtest(**vars(args))


def run_loadtest(
    *,
    scenario: Path = DEFAULT_SCENARIO,
    host: str = "",
    grpc_target: str = "",
    run_time: int = 20,
    users: int = 8,
    spawn_rate: float = 8.0,
    user_rps: float = 2.0,
    shape: str = "steps",
    protocol: str = "http",
    policy: str = "synergai",
    csv: Path = DEFAULT_CSV,
) -> int:
    """Start a stack unless ``host`` is given, run locust headless, print its summary.

    Returns:
        locust's exit code; 2 for a bad argument, 130 when interrupted.
    """
    bad = _check(run_time, users, shape, protocol)
    if bad:
        print(f"synergai loadtest: {bad}", file=sys.stderr)
        return 2
    csv.parent.mkdir(parents=True, exist_ok=True)
    opts: dict[str, Any] = {
        "run_time_s": run_time,
        "users": users,
        "spawn_rate": spawn_rate,
        "shape": shape,
        "protocol": protocol,
        "csv_prefix": csv,
        "scenario": scenario,
        "user_rps": user_rps,
    }
    if host:
        rc = _run(locust_command(host, grpc_target=grpc_target, **opts), run_time)
        _print_summary(summary(csv))
        return rc
    from loadtest.bench_stack import LiveStack
    from loadtest.bench_workload import scenario_for_run

    sc = scenario_for_run(scenario, None)
    with tempfile.TemporaryDirectory(prefix="synergai-locust-") as wd:
        stack = LiveStack(sc, Path(wd), replicas=1, progress=True)
        try:
            stack.start()
            (gw,) = stack.start_gateways(policy)
            print(f"gateway {gw.url} (gRPC {gw.grpc_target}), policy {policy}", file=sys.stderr)
            t0 = time.monotonic()
            cmd = locust_command(gw.url, grpc_target=gw.grpc_target, **opts)
            rc = _run(cmd, run_time)
            print(f"locust ran {time.monotonic() - t0:.1f} s; CSV: {csv}_stats.csv")
        except KeyboardInterrupt:
            return 130
        finally:
            stack.stop()
    _print_summary(summary(csv))
    return rc


def _check(run_time: int, users: int, shape: str, protocol: str) -> str:
    """Why these arguments cannot run ("" when they can)."""
    if not 1 <= run_time <= MAX_RUN_TIME_S:
        return f"--run-time must be within 1..{MAX_RUN_TIME_S} s, not {run_time}"
    if users < 1:
        return f"--users must be >= 1, not {users}"
    if shape not in SHAPE_NAMES:
        return f"--shape must be one of {', '.join(SHAPE_NAMES)}, not {shape!r}"
    if protocol not in PROTOCOLS:
        return f"--protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}"
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
