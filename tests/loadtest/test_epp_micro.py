"""The picker micro-benchmark: every message answered, and the answers' bytes repeatable."""

from __future__ import annotations

from loadtest.epp_micro import measure


async def test_every_message_is_answered_and_the_run_is_deterministic() -> None:
    first = await measure(40, warmup=10)
    again = await measure(40, warmup=10)
    # settings exchange (2 writes), one write per message (2 per request), GOAWAY at stop
    assert first["writes"] == again["writes"] == 2 + 2 * 50 + 1
    assert first["sha256"] == again["sha256"]
    assert first["cpu_us_per_request"] > 0
