"""A scenario's fleet and traffic replicated ``k`` times: the *no worse at scale* invariant.

``replicate(sc, k)`` multiplies every pool's servers and every stream's rate by ``k``;
SLOs, profiles, RTTs, speeds, arrival shapes and the duration stay. A fault on a whole pool
stays one fault on the (bigger) pool; a fault on server ``i`` of a pool of ``n`` becomes the
same fault on servers ``i, i + n, ..., i + (k - 1) n``: each copy of the fleet has its own.
So per-server load is unchanged and each pool pools ``k`` times as many servers: a policy's
violation rate should stay the same or fall (pooling); a rise means a rule reads fleet-wide
figures (rates, counts) as one server's.
"""

from __future__ import annotations

from gateway.scenario import Scenario

__all__ = ["replicate"]


def replicate(sc: Scenario, k: int) -> Scenario:
    """``sc`` with ``k`` copies of its fleet and ``k`` times its rates (see the module doc).

    Raises:
        ValueError: ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k == 1:
        return sc
    size = {p.name: p.workers for p in sc.pools}
    faults = []
    for f in sc.faults:
        if f.worker is None:
            faults.append(f)
            continue
        n = size[f.pool]
        faults.extend(f.model_copy(update={"worker": f.worker + j * n}) for j in range(k))
    out = sc.model_copy(
        update={
            "name": f"{sc.name}-x{k}",
            "pools": [p.model_copy(update={"workers": p.workers * k}) for p in sc.pools],
            "workload": [w.model_copy(update={"rate_rps": w.rate_rps * k}) for w in sc.workload],
            "faults": faults,
        }
    )
    return out.with_profiles(sc.profile_book)
