"""The ``synergai`` command line (DESIGN.md §3 is the contract).

Each command parses its flags here and hands over to the module that owns the work, imported
lazily so ``synergai --help`` stays fast and one subsystem's heavy imports do not slow another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from loadtest import scenarios
from loadtest.run_locust import DEFAULT_CSV, MAX_RUN_TIME_S, LocustProtocol, Shape

app = typer.Typer(
    name="synergai",
    help=(
        "SynergAI Gateway: an architecture-aware, SLO-aware KServe v2 gateway for fleets of "
        "NVIDIA Triton servers.\n\nStart with `synergai demo` (embedded Valkey + an emulated "
        "fleet of real Triton servers + the gateway), then try `synergai simulate --scenario "
        "edge-cloud`. Every command takes `--help`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

ScenarioOpt = Annotated[
    Path | None,
    typer.Option(
        "--scenario",
        "-s",
        help=(
            "Scenario YAML (DESIGN.md §4), or the name of a bundled one: "
            f"{', '.join(scenarios.bundled())}."
        ),
        dir_okay=False,
        metavar="FILE|NAME",
        show_default=f"bundled {scenarios.DEFAULT}",
    ),
]
PolicyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--policy",
        "-p",
        metavar="NAME",
        help="Policy to run; repeat for several (default: all registered).",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON document on stdout; logs to stderr.")
]


def _need(what: str, *extras: str, modules: tuple[str, ...] | None = None) -> None:
    """Stop with exit code 2 and the extra to install when ``what`` cannot run without it."""
    from gateway.extras import MissingExtra, check

    try:
        check(what, *extras, modules=modules)
    except MissingExtra as exc:
        typer.echo(f"synergai: {exc}", err=True)
        raise typer.Exit(2) from None


PLOTS = ("matplotlib",)
"""What ``--plot`` and ``--html`` need (of the ``bench`` extra)."""


def _examples(*lines: str) -> str:
    """A command's ``--help`` epilog: one example command per line."""
    return "**Examples**\n\n" + "\n\n".join(f"`{line}`" for line in lines)


@app.command(
    epilog=_examples(
        "synergai demo",
        "synergai demo --duration 5 --exit-after-load",
        "synergai demo --scenario edge-cloud --port 9080 --grpc-port 9081",
    )
)
def demo(
    scenario: ScenarioOpt = None,
    duration: Annotated[
        float, typer.Option(help="Seconds of demo load per policy.", min=0.1)
    ] = 10.0,
    exit_after_load: Annotated[
        bool, typer.Option("--exit-after-load", help="Stop everything after the load.")
    ] = False,
    port: Annotated[int, typer.Option(help="Gateway REST port.")] = 8080,
    grpc_port: Annotated[int, typer.Option(help="Gateway gRPC port.")] = 8081,
) -> None:
    """Run the whole stack locally: Valkey, an emulated Triton fleet, the gateway, a short load.

    Prints the URLs and sample calls, runs a short load comparing policies (waiting for an idle
    fleet before each), prints the table, then serves until Ctrl-C or SIGTERM (or exits with
    --exit-after-load), stopping every child.
    """
    _need("synergai demo", "workers", "embedded")
    from gateway.demo import run_demo

    raise typer.Exit(
        run_demo(
            scenario=scenarios.resolve(scenario),
            duration=duration,
            exit_after_load=exit_after_load,
            port=port,
            grpc_port=grpc_port,
        )
    )


@app.command(
    epilog=_examples(
        "synergai serve --config docker/gateway/compose.yaml",
        "REDIS_URL=redis://127.0.0.1:6379/0 synergai serve -c gateway.yaml --workers 4",
        "synergai workers --scenario demo   # then serve the config it prints",
    )
)
def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gateway config YAML (workers, models).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Gateway processes.", min=1)] = 1,
    port: Annotated[int | None, typer.Option(help="REST port (default 8080).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default 8081).")] = None,
) -> None:
    """Run the production gateway (REST, gRPC, /metrics) against configured or discovered workers.

    Settings come from the config file and SYNERGAI_* environment variables; REDIS_URL unset
    starts an embedded Valkey (the `embedded` extra).
    """
    from gateway.server import run_serve

    raise typer.Exit(run_serve(config=config, workers=workers, port=port, grpc_port=grpc_port))


@app.command(
    epilog=_examples(
        "synergai epp --config gateway.yaml",
        "REDIS_URL=redis://valkey:6379/0 synergai epp -c gateway.yaml --port 9002",
    )
)
def epp(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gateway config YAML (workers, models).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="ext_proc + gRPC health port (default 9002).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus /metrics port (default 9090; 0: off).")
    ] = None,
) -> None:
    """Run the routing brain as a Gateway API endpoint picker (Envoy ext_proc, GIE protocol).

    Same config, policies and Redis state as `serve`; Envoy forwards, this process picks.
    docs/endpoint-picker.md puts it in front of Triton pools.
    """
    _need("synergai epp", "epp")
    from gateway.epp.run import run_epp

    raise typer.Exit(run_epp(config=config, port=port, metrics_port=metrics_port))


@app.command(
    "workers",
    epilog=_examples("synergai workers", "synergai workers --scenario edge-cloud --time-scale 4"),
)
def workers_cmd(
    scenario: ScenarioOpt = None,
    time_scale: Annotated[
        float | None, typer.Option(help="Override the scenario's time_scale.", min=0.01)
    ] = None,
) -> None:
    """Start only the emulated Triton fleet of a scenario and print its worker list."""
    _need("synergai workers", "workers")
    from workers.fleet import run_workers

    raise typer.Exit(run_workers(scenario=scenarios.resolve(scenario), time_scale=time_scale))


@app.command(
    epilog=_examples(
        "synergai simulate",
        "synergai simulate --scenario edge-cloud --policy synergai --policy round_robin",
        "synergai simulate -s drift-crash --seed 7 --json > sim.json",
        "synergai simulate --gateways 4 --plot sim.png --html sim.html",
        "synergai simulate --bench-decisions",
    )
)
def simulate(
    scenario: ScenarioOpt = None,
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
        int,
        typer.Option(help="Gateway replicas sharing per-worker load (simulated Redis).", min=1),
    ] = 1,
) -> None:
    """Discrete-event simulation of a scenario under each policy, on one arrival trace."""
    if plot is not None or html is not None:
        _need("--plot and --html", "bench", modules=PLOTS)
    from loadtest.sim.cli import run_simulate

    raise typer.Exit(
        run_simulate(
            scenario=scenarios.resolve(scenario),
            policies=policy,
            seed=seed,
            json_out=json_out,
            plot=plot,
            html=html,
            bench_decisions_flag=bench_decisions,
            gateways=gateways,
        )
    )


bench_app = typer.Typer(
    help="Live benchmarks on real Valkey + real Triton + real gateways.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode="markdown",
)
app.add_typer(bench_app, name="bench")


@bench_app.callback(
    epilog=_examples(
        "synergai bench --duration 10",
        "synergai bench -s edge-cloud --time-scale 4 --policy synergai --policy p2c",
        "synergai bench --protocol grpc --gateways 2 --json > live.json",
        "synergai bench --compare-sim --plot live.png --html live.html",
        "synergai bench -s demo --time-scale 1 --duration 15 --compare-sim --overhead-ms 0",
        "synergai bench overhead --json",
    )
)
def bench(
    ctx: typer.Context,
    scenario: ScenarioOpt = None,
    policy: PolicyOpt = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds per policy (default: the scenario's).")
    ] = None,
    protocol: Annotated[
        Literal["http", "grpc"], typer.Option(help="Client protocol to the gateways.")
    ] = "http",
    gateways: Annotated[int, typer.Option(help="Gateway replicas sharing Redis.", min=1)] = 1,
    via: Annotated[
        Literal["gateway", "envoy"],
        typer.Option(help="Front door: our gateway, or a real Envoy with synergai epp picking."),
    ] = "gateway",
    time_scale: Annotated[
        float | None,
        typer.Option(
            help="Override the scenario's time_scale: every latency x X, every rate / X (a "
            "slower clock for small machines)."
        ),
    ] = None,
    compare_sim: Annotated[
        bool, typer.Option("--compare-sim", help="Also simulate; print both side by side.")
    ] = False,
    overhead_ms: Annotated[
        str | None,
        typer.Option(
            "--overhead-ms",
            metavar="auto|MS",
            help="The live path's fixed cost per request (client, gateway, Triton's front end) "
            "that the simulator of --compare-sim adds to every request and its router predicts "
            "with. 'auto' (the default with --compare-sim, unless the scenario sets "
            "overhead_ms) measures it first on this machine (~20 s) and also gives the live "
            "gateways their share as overhead_ms; a number is a constant for the simulator; "
            "0 turns it off.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
) -> None:
    """Replay a scenario's seeded trace open-loop against the live stack, policy by policy.

    Every policy starts on an idle fleet with fresh gateways and an empty Redis.
    """
    if ctx.invoked_subcommand is not None:
        return
    _need("synergai bench", "workers", "embedded")
    if plot is not None or html is not None:
        _need("--plot and --html", "bench", modules=PLOTS)
    from loadtest.bench import run_bench

    raise typer.Exit(
        run_bench(
            scenario=scenarios.resolve(scenario),
            policies=policy,
            duration=duration,
            protocol=protocol,
            gateways=gateways,
            compare_sim=compare_sim,
            json_out=json_out,
            plot=plot,
            html=html,
            time_scale=time_scale,
            via=via,
            overhead=overhead_ms,
        )
    )


@bench_app.command(
    "overhead",
    epilog=_examples(
        "synergai bench overhead",
        "synergai bench overhead --duration 3 --json --plot overhead.png",
        "synergai bench overhead --concurrency 1 --concurrency 32 --duration 2 --json",
    ),
)
def bench_overhead(
    json_out: JsonOpt = False,
    duration: Annotated[float, typer.Option(help="Seconds per concurrency level.", min=0.1)] = 5.0,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
    concurrency: Annotated[
        list[int] | None,
        typer.Option(
            help="Closed-loop clients of one row; repeat for several (default: 1, 8, 32, 128).",
            min=1,
            metavar="N",
        ),
    ] = None,
) -> None:
    """Direct-to-Triton vs through the gateway, nginx least_conn, Envoy, Envoy + synergai epp.

    Closed-loop load at concurrency 1, 8, 32 and 128 (or --concurrency) against one Triton
    worker, over HTTP and gRPC, plus a 1 MiB-tensor row per target at c=8: throughput, p50,
    p99 and the gateway's, the endpoint picker's and Envoy's CPU time per request.
    """
    _need("synergai bench overhead", "workers", "embedded")
    if plot is not None:
        _need("--plot", "bench", modules=PLOTS)
    from loadtest.overhead import run_overhead

    raise typer.Exit(
        run_overhead(json_out=json_out, duration=duration, plot=plot, concurrency=concurrency)
    )


@app.command(
    "loadtest",
    epilog=_examples(
        "synergai loadtest",
        "synergai loadtest --run-time 60 --users 32 --shape bursts --protocol both",
        "synergai loadtest --host http://127.0.0.1:8080 --grpc-target 127.0.0.1:8081",
    ),
)
def loadtest_cmd(
    scenario: ScenarioOpt = None,
    host: Annotated[
        str,
        typer.Option(help="Gateway URL to load; empty: start a stack (Valkey, fleet, gateway)."),
    ] = "",
    grpc_target: Annotated[
        str, typer.Option(help="Gateway gRPC host:port (default: --host's name, port 8081).")
    ] = "",
    run_time: Annotated[
        int, typer.Option(help="Seconds of load (bounded).", min=1, max=MAX_RUN_TIME_S)
    ] = 20,
    users: Annotated[int, typer.Option(help="Concurrent locust users.", min=1)] = 8,
    spawn_rate: Annotated[float, typer.Option(help="Users started per second.")] = 8.0,
    user_rps: Annotated[float, typer.Option(help="Requests per second per user.")] = 2.0,
    shape: Annotated[
        Shape, typer.Option(help="Load shape: constant (--users), steps, bursts or diurnal.")
    ] = "steps",
    protocol: Annotated[
        LocustProtocol, typer.Option(help="Which locust users run: REST, gRPC or both.")
    ] = "http",
    policy: Annotated[str, typer.Option(help="Policy of the gateway it starts.")] = "synergai",
    csv: Annotated[
        Path,
        typer.Option(help="CSV prefix P: writes P_stats.csv, P_failures.csv, P_stats_history.csv."),
    ] = DEFAULT_CSV,
) -> None:
    """A bounded headless locust run (REST and gRPC users) against a local stack or --host.

    Without --host it starts Valkey, the scenario's fleet and one gateway, runs locust with the
    scenario's model mix and SLO hints, prints the summary and stops everything.
    """
    _need("synergai loadtest", "bench", modules=("locust",))
    if not host:
        _need("synergai loadtest without --host", "workers", "embedded")
    from loadtest.run_locust import run_loadtest

    raise typer.Exit(
        run_loadtest(
            scenario=scenarios.resolve(scenario),
            host=host,
            grpc_target=grpc_target,
            run_time=run_time,
            users=users,
            spawn_rate=spawn_rate,
            user_rps=user_rps,
            shape=shape,
            protocol=protocol,
            policy=policy,
            csv=csv,
        )
    )


@app.command(
    epilog=_examples(
        "synergai profile --url http://127.0.0.1:8000 --model resnet50 --arch nvidia-t4",
        "synergai profile --url http://10.0.0.5:8000 --model bert-base --arch my-board "
        "--max-batch 8 --concurrency 1 --concurrency 4 --out profiles/my-board/bert-base.yaml",
        "synergai profile --from-live http://127.0.0.1:8080 --out profiles-live",
    )
)
def profile(
    url: Annotated[str, typer.Option(help="Triton HTTP URL, e.g. http://127.0.0.1:8000.")] = "",
    model: Annotated[str, typer.Option(help="Model name on that server.")] = "",
    arch: Annotated[str, typer.Option(help="Architecture name written in the profile.")] = "",
    out: Annotated[
        Path | None, typer.Option(help="Profile file to write (a directory with --from-live).")
    ] = None,
    max_batch: Annotated[int | None, typer.Option(help="Largest batch to sweep.")] = None,
    duration: Annotated[float, typer.Option(help="Seconds per measurement point.")] = 3.0,
    concurrency: Annotated[
        list[int] | None, typer.Option(help="Concurrency levels (repeat; default 1 and 4).")
    ] = None,
    from_live: Annotated[
        str | None,
        typer.Option("--from-live", help="Gateway URL: write profiles from observed latency."),
    ] = None,
) -> None:
    """Measure a model on a live Triton worker and write its profile (DESIGN.md §5)."""
    if from_live:
        from gateway.prediction.drift import run_profile_from_live

        raise typer.Exit(run_profile_from_live(gateway_url=from_live, out=out))
    if not (url and model and arch):
        raise typer.BadParameter("--url, --model and --arch are required (or --from-live)")
    from workers.profiler import run_profile

    raise typer.Exit(
        run_profile(
            url=url,
            model=model,
            arch=arch,
            out=out,
            max_batch=max_batch,
            duration_s=duration,
            concurrency=concurrency or [1, 4],
        )
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
