"""Emulated Triton worker fleets: real ``tritonserver`` processes on emulated architectures.

* :mod:`workers.triton_env` - where the wheel's Triton lives and the environment it needs;
* :mod:`workers.repository` - generated model repositories (emulation model + slot limit);
* :mod:`workers.launcher` - start/stop servers (``TritonServer``, ``start_servers``);
* :mod:`workers.netem` - the delaying relay that emulates a pool's ``rtt_ms``;
* :mod:`workers.fleet` - a scenario's fleet, faults, ``run_workers`` (``synergai workers``);
* :mod:`workers.profiler` - ``run_profile`` (``synergai profile``).

Nothing is imported here, so ``import workers`` stays cheap.
"""
