"""Kill -9 the endpoint picker mid-load behind a real Envoy, and count what the clients saw.

``python -m loadtest.epp_failover [--json] [--clients N] [--down S]`` starts a small emulated
fleet (two real Triton servers, 5 ms model), then for each GIE ``failureMode``:

1. Envoy + ``synergai epp`` in front of it, ``N`` closed-loop REST clients for 1 s;
2. ``SIGKILL`` to the picker; the load goes on for ``S`` seconds;
3. the picker restarted; the load goes on until an answer carries ``x-synergai-worker``
   again (the picker took over), then 1 s more.

It prints, per mode, the requests answered before, during and after the outage, how many
failed (any status but 200, or no answer), how long the restarted picker took to report ready
(its own start-up: imports, Valkey, readiness) and then to pick again (Envoy reconnecting);
a table on stderr (stdout without ``--json``) and, with ``--json``, one JSON document on
stdout. Target (issue 17): with ``FailOpen``, 0 failed requests beyond the ones in flight at
the kill (at most ``N``); with ``FailClose``, every outage answer a clean 503.

``tests/integration/test_epp_failover.py`` runs the same sequence and asserts it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["BODY", "Load", "failover_figures", "kill_and_restart", "main", "run_failover"]

BODY = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[1]}]}'
_MODEL = "m"


@dataclass
class Load:
    """Closed-loop REST clients recording ``(time, status, picked by our EPP)`` per answer.

    Status 0 is no answer at all (connection error, timeout).
    """

    url: str
    marks: dict[str, float] = field(default_factory=dict)
    """Times of the sequence's events (``ready``: the restarted picker reported ready)."""
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, int, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, deadline: float) -> None:
        """One client: POST an infer, record the answer, 2 ms pause, until stopped."""
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    resp = http.post(f"{self.url}/v2/models/{_MODEL}/infer", content=BODY)
                    row = (time.monotonic(), resp.status_code, "x-synergai-worker" in resp.headers)
                except httpx.HTTPError:
                    row = (time.monotonic(), 0, False)
                with self.lock:
                    self.results.append(row)
                time.sleep(0.002)

    def between(self, t0: float, t1: float) -> list[tuple[float, int, bool]]:
        """The answers recorded in ``[t0, t1)``."""
        with self.lock:
            return [r for r in self.results if t0 <= r[0] < t1]


def kill_and_restart(
    stack: Any, load: Load, clients: int, down_s: float = 1.5
) -> tuple[float, float, float]:
    """Load for 1 s, kill -9 the picker, load ``down_s``, restart it, load until it picks.

    Args:
        stack: a started :class:`gateway.epp.stack.EnvoyStack` with a picker.
        load: the clients' target and record.
        clients: closed-loop client threads.
        down_s: seconds the picker stays dead.

    Returns:
        When it was killed, when it was restarted, and when it picked again (0 if not within
        15 s); the load goes on for 1 s after that.
    """
    assert stack.epp is not None
    deadline = time.monotonic() + 60
    threads = [threading.Thread(target=load.client, args=(deadline,)) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        killed = time.monotonic()
        stack.epp.kill()  # SIGKILL
        time.sleep(down_s)
        restarted = time.monotonic()
        stack.epp.start()
        stack.epp.wait_ready(30)
        back = load.marks["ready"] = time.monotonic()
        limit = back + 15
        took_over = 0.0
        while time.monotonic() < limit and not took_over:
            ours = [r[0] for r in load.between(back, 1e18) if r[2]]
            took_over = min(ours) if ours else 0.0
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        load.stop.set()
        for t in threads:
            t.join(15)
    return killed, restarted, took_over


def failover_figures(
    load: Load, killed: float, restarted: float, back: float, clients: int
) -> dict[str, Any]:
    """What the clients saw, before / during / after the outage (see the module docstring).

    The outage is ``[killed + 0.2 s, restarted)``: answers in the first 0.2 s after the kill
    may belong to requests in flight at the kill.
    """
    with load.lock:
        rows = list(load.results)

    def part(t0: float, t1: float) -> dict[str, Any]:
        sel = [r for r in rows if t0 <= r[0] < t1]
        return {
            "requests": len(sel),
            "failed": sum(1 for r in sel if r[1] != 200),
            "picked_by_epp": sum(1 for r in sel if r[2]),
            "codes": {str(k): v for k, v in sorted(Counter(r[1] for r in sel).items())},
        }

    ready = load.marks.get("ready")
    return {
        "clients": clients,
        "requests": len(rows),
        "failed": sum(1 for r in rows if r[1] != 200),
        "before": part(0.0, killed),
        "at_kill": part(killed, killed + 0.2),
        "outage": part(killed + 0.2, restarted),
        "restarting": part(restarted, back if back else 1e18),
        "after": part(back, 1e18) if back else part(1e18, 1e18),
        "down_s": round(restarted - killed, 3),
        "ready_after_restart_s": None if ready is None else round(ready - restarted, 3),
        "picked_after_ready_s": None if not back or ready is None else round(back - ready, 3),
    }


def _verdict(name: str, m: dict[str, Any]) -> str:
    """Issue 17's target for the mode, as a short phrase."""
    if name == "FailOpen":
        bad = m["failed"]
        ok = bad <= m["clients"]
        return f"{'met' if ok else 'MISSED'}: {bad} failed, in flight at the kill <= {m['clients']}"
    outage = m["outage"]
    clean = outage["codes"] == {"503": outage["requests"]}
    return f"{'met' if clean else 'MISSED'}: every outage answer a 503"


def _fleet(directory: Path) -> tuple[Any, list[dict[str, Any]], Path]:
    from workers.testing import FleetFactory, write_scenario

    path = write_scenario(
        directory,
        pools=[{"name": "p", "arch": "toy", "workers": 2, "instances": 2, "rtt_ms": 0,
                "models": [_MODEL]}],
        profiles={("toy", _MODEL): {1: (5.0, 5.0), 8: (8.0, 8.0)}},
    )  # fmt: skip
    factory = FleetFactory()
    specs = factory(path, inject_faults=False)
    return factory, [w.as_config() for w in specs], directory / "profiles"


def run_failover(json_out: bool, clients: int = 4, down_s: float = 1.5) -> int:
    """Both failure modes, one after the other, on one fleet; prints the figures. Exit code."""
    from rich.console import Console
    from rich.table import Table

    from gateway.epp.stack import EnvoyStack
    from loadtest.bench import machine

    err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    out = err if json_out else Console(width=None if sys.stdout.isatty() else 140)
    mach = machine()
    wd = Path(tempfile.mkdtemp(prefix="synergai-failover-"))
    modes: dict[str, dict[str, Any]] = {}
    factory = None
    try:
        factory, workers, profiles = _fleet(wd)
        for name, fail_open in (("FailOpen", True), ("FailClose", False)):
            with EnvoyStack(workers, wd / name, profiles, fail_open=fail_open) as stack:
                load = Load(stack.url)
                killed, restarted, back = kill_and_restart(stack, load, clients, down_s)
            modes[name] = failover_figures(load, killed, restarted, back, clients)
            err.print(f"[dim]{name}: {modes[name]['requests']} requests[/dim]")
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; every child stopped[/yellow]")
        return 130
    finally:
        left = factory.close() if factory is not None else []
        shutil.rmtree(wd, ignore_errors=True)
        if left:
            err.print(f"[red]processes left running: {left}[/red]")
    t = Table(title="endpoint picker killed (SIGKILL) mid-load behind Envoy", title_justify="left")
    for col in ("mode", "requests", "failed", "outage", "outage failed", "outage codes",
                "ready after restart", "first pick after ready", "target"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("mode", "outage codes", "target") else "right")
    for name, m in modes.items():
        o, ready, pick = m["outage"], m["ready_after_restart_s"], m["picked_after_ready_s"]
        t.add_row(
            name,
            str(m["requests"]),
            str(m["failed"]),
            str(o["requests"]),
            str(o["failed"]),
            json.dumps(o["codes"]),
            "-" if ready is None else f"{ready} s",
            "-" if pick is None else f"{pick} s",
            _verdict(name, m),
        )
    out.print(t)
    if json_out:
        doc = {
            "mode": "epp-failover",
            "modes": modes,
            "targets": {name: _verdict(name, m) for name, m in modes.items()},
            "meta": {"machine": mach, "loadavg_1m_end": round(os.getloadavg()[0], 2),
                     "clients": clients, "down_s": down_s, "model_ms": 5.0, "workers": 2},
        }  # fmt: skip
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtest.epp_failover [--json] [--clients N] [--down S]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m loadtest.epp_failover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--clients", type=int, default=4, help="closed-loop clients (default 4)")
    p.add_argument("--down", type=float, default=1.5, help="seconds the picker stays dead")
    args = p.parse_args(argv)
    if args.clients < 1 or args.down <= 0:
        p.error("--clients must be >= 1 and --down > 0")
    return run_failover(args.json, args.clients, args.down)


if __name__ == "__main__":
    raise SystemExit(main())
