"""The ``synergai`` command line (DESIGN.md §3 is the contract).

Each command parses its flags here and hands over to the module that owns the work, imported
lazily so ``synergai --help`` stays fast and one subsystem's heavy imports do not slow another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="synergai",
    help=(
        "SynergAI Gateway: an architecture-aware, SLO-aware KServe v2 gateway for fleets of "
        "NVIDIA Triton servers.\n\nStart with `synergai demo` (embedded Valkey + an emulated "
        "fleet of real Triton servers + the gateway), then try `synergai simulate --scenario "
        "loadtest/scenarios/demo.yaml`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_SCENARIO = Path("loadtest/scenarios/demo.yaml")

ScenarioOpt = Annotated[
    Path, typer.Option("--scenario", "-s", help="Scenario YAML (DESIGN.md §4).", dir_okay=False)
]
PolicyOpt = Annotated[
    list[str] | None,
    typer.Option("--policy", "-p", help="Policy to run; repeat for several (default: all)."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON document on stdout; logs to stderr.")
]


@app.command()
def demo(
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    duration: Annotated[float, typer.Option(help="Seconds of demo load per policy.")] = 10.0,
    exit_after_load: Annotated[
        bool, typer.Option("--exit-after-load", help="Stop everything after the load.")
    ] = False,
    port: Annotated[int, typer.Option(help="Gateway REST port.")] = 8080,
    grpc_port: Annotated[int, typer.Option(help="Gateway gRPC port.")] = 8081,
) -> None:
    """Run the whole stack locally: Valkey, an emulated Triton fleet, the gateway, a short load.

    Prints the URLs and sample calls, runs a short load comparing policies, prints the table,
    then serves until Ctrl-C or SIGTERM (or exits with --exit-after-load), stopping every child.
    """
    from gateway.demo import run_demo

    raise typer.Exit(run_demo(scenario, duration, exit_after_load, port, grpc_port))


@app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gateway config YAML (workers, models).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Gateway processes.")] = 1,
    port: Annotated[int | None, typer.Option(help="REST port (default 8080).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default 8081).")] = None,
) -> None:
    """Run the production gateway (REST, gRPC, /metrics) against configured or discovered workers.

    Settings come from the config file and SYNERGAI_* environment variables; REDIS_URL unset
    starts an embedded Valkey.
    """
    from gateway.server import run_serve

    raise typer.Exit(run_serve(config, workers, port, grpc_port))


@app.command("workers")
def workers_cmd(
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    time_scale: Annotated[
        float | None, typer.Option(help="Override the scenario's time_scale.")
    ] = None,
) -> None:
    """Start only the emulated Triton fleet of a scenario and print its worker list."""
    from workers.fleet import run_workers

    raise typer.Exit(run_workers(scenario, time_scale))


@app.command()
def simulate(
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    policy: PolicyOpt = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the scenario's).")] = None,
    json_out: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    bench_decisions: Annotated[
        bool,
        typer.Option("--bench-decisions", help="Time routing decisions at 16 and 1,000 workers."),
    ] = False,
    gateways: Annotated[
        int, typer.Option(help="Gateway replicas sharing per-worker load (simulated Redis).")
    ] = 1,
) -> None:
    """Discrete-event simulation of a scenario under each policy, on one arrival trace."""
    from loadtest.sim.cli import run_simulate

    raise typer.Exit(
        run_simulate(scenario, policy, seed, json_out, plot, html, bench_decisions, gateways)
    )


bench_app = typer.Typer(
    help="Live benchmarks on real Valkey + real Triton + real gateways.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(bench_app, name="bench")


@bench_app.callback()
def bench(
    ctx: typer.Context,
    scenario: ScenarioOpt = DEFAULT_SCENARIO,
    policy: PolicyOpt = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds per policy (default: the scenario's).")
    ] = None,
    protocol: Annotated[str, typer.Option(help="http or grpc.")] = "http",
    gateways: Annotated[int, typer.Option(help="Gateway replicas sharing Redis.")] = 1,
    time_scale: Annotated[
        float | None, typer.Option(help="Override the scenario's time_scale (slower clock).")
    ] = None,
    compare_sim: Annotated[
        bool, typer.Option("--compare-sim", help="Also simulate; print both side by side.")
    ] = False,
    json_out: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
) -> None:
    """Replay a scenario's seeded trace open-loop against the live stack, policy by policy."""
    if ctx.invoked_subcommand is not None:
        return
    from loadtest.bench import run_bench

    raise typer.Exit(
        run_bench(scenario, policy, duration, protocol, gateways, compare_sim, json_out, plot, html)
    )


@bench_app.command("overhead")
def bench_overhead(
    json_out: JsonOpt = False,
    duration: Annotated[float, typer.Option(help="Seconds per concurrency level.")] = 5.0,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
) -> None:
    """Direct-to-Triton vs through the gateway (vs nginx least_conn when installed).

    Closed-loop load at concurrency 1, 8, 32 and 128 against one Triton worker, over HTTP and
    gRPC: throughput, p50, p99 and the gateway's CPU time per request.
    """
    from loadtest.overhead import run_overhead

    raise typer.Exit(run_overhead(json_out, duration, plot=plot))


@app.command(
    "loadtest",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def loadtest_cmd(ctx: typer.Context) -> None:
    """Short headless locust run against a local demo stack (extra args go to locust's runner).

    Starts Valkey, the demo fleet and the gateway, runs locust (REST and gRPC users, the
    scenario's model mix and SLO hints) for a bounded time, writes CSV. See
    `python -m loadtest.run_locust --help` for its options.
    """
    from loadtest.run_locust import main as locust_main

    raise typer.Exit(locust_main(list(ctx.args)))


@app.command()
def profile(
    url: Annotated[str, typer.Option(help="Triton HTTP URL, e.g. http://127.0.0.1:8000.")] = "",
    model: Annotated[str, typer.Option(help="Model name on that server.")] = "",
    arch: Annotated[str, typer.Option(help="Architecture name written in the profile.")] = "",
    out: Annotated[Path | None, typer.Option(help="Profile file to write.")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Largest batch to sweep.")] = None,
    duration: Annotated[float, typer.Option(help="Seconds per measurement point.")] = 3.0,
    concurrency: Annotated[
        list[int] | None, typer.Option(help="Concurrency levels (repeat).")
    ] = None,
    from_live: Annotated[
        str | None,
        typer.Option("--from-live", help="Gateway URL: write profiles from observed latency."),
    ] = None,
) -> None:
    """Measure a model on a live Triton worker and write its profile (DESIGN.md §5)."""
    if from_live:
        from gateway.prediction.drift import run_profile_from_live

        raise typer.Exit(run_profile_from_live(from_live, out))
    if not (url and model and arch):
        raise typer.BadParameter("--url, --model and --arch are required (or --from-live)")
    from workers.profiler import run_profile

    raise typer.Exit(run_profile(url, model, arch, out, max_batch, duration, concurrency or [1, 4]))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
