"""``loadtest.epp_failover``'s figures from a recorded load (no servers)."""

from __future__ import annotations

from loadtest.epp_failover import Load, failover_figures


def test_figures_split_the_load_at_kill_restart_and_takeover() -> None:
    load = Load("http://127.0.0.1:1")
    load.results = [
        (0.5, 200, True),
        (1.05, 0, False),  # in flight at the kill (t=1.0)
        (1.5, 200, False),  # Envoy's own balancing
        (2.0, 503, False),
        (2.6, 200, False),  # restarted at 2.5, not picking yet
        (2.8, 200, True),  # took over at 2.8
    ]
    load.marks["ready"] = 2.7
    fig = failover_figures(load, killed=1.0, restarted=2.5, back=2.8, clients=4)
    assert fig["requests"] == 6 and fig["failed"] == 2
    assert fig["before"] == {"requests": 1, "failed": 0, "picked_by_epp": 1, "codes": {"200": 1}}
    assert fig["at_kill"]["failed"] == 1
    assert fig["outage"] == {"requests": 2, "failed": 1, "picked_by_epp": 0,
                             "codes": {"200": 1, "503": 1}}  # fmt: skip
    assert fig["after"]["requests"] == 1 and fig["after"]["picked_by_epp"] == 1
    assert fig["restarting"]["requests"] == 1
    assert fig["down_s"] == 1.5 and fig["ready_after_restart_s"] == 0.2
    assert fig["picked_after_ready_s"] == 0.1
    never = failover_figures(load, 1.0, 2.5, 0.0, 4)
    assert never["picked_after_ready_s"] is None and never["after"]["requests"] == 0
