"""PNG plots of a simulation: violation rate and p99 by policy, violations over time."""

from __future__ import annotations

from pathlib import Path

from loadtest.sim.metrics import violations_over_time
from loadtest.sim.runner import ScenarioRun

__all__ = ["write_plot"]


def write_plot(run: ScenarioRun, path: Path) -> None:
    """Write a three-panel PNG (matplotlib, Agg backend) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pols = run.document["policies"]
    names = list(pols)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    rates = [100.0 * pols[n]["violation_rate"] for n in names]
    axes[0].bar(names, rates, color=["#c44" if n == "synergai" else "#889" for n in names])
    axes[0].set_ylabel("SLO violations (%)")
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].set_title("violation rate by policy")
    p99 = [pols[n]["p99_ms"] or 0.0 for n in names]
    axes[1].bar(names, p99, color="#58a")
    axes[1].set_ylabel("p99 latency (ms)")
    axes[1].set_yscale("log")
    axes[1].set_title("p99 of successful answers")
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=45)
    for n in names:
        t, v = violations_over_time(run.scenario, run.trace, run.results[n])
        axes[2].plot(t, 100.0 * v, label=n, lw=2.0 if n == "synergai" else 1.0)
    axes[2].set_xlabel("time (s)")
    axes[2].set_ylabel("violations (%)")
    axes[2].set_yscale("symlog", linthresh=0.1)
    axes[2].set_title("violations over time")
    axes[2].legend(fontsize=7)
    fig.suptitle(f"scenario {run.scenario.name} (simulated, seed {run.document['seed']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
