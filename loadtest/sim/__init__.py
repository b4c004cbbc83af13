"""Discrete-event simulator: a scenario's trace through the real policy objects.

Public entry points: :func:`loadtest.sim.trace.build_trace`, :func:`loadtest.sim.engine.simulate`,
:func:`loadtest.sim.metrics.summarize`, :func:`loadtest.sim.cli.run_simulate`.
"""
