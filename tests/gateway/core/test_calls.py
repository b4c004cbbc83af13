"""The one classification of how an attempt on a worker ended (gateway.core.calls)."""

from __future__ import annotations

import pytest

from gateway.core.calls import UPSTREAM_ERROR_KIND, finish_view, outcome_of
from gateway.errors import (
    STATUS_TABLE,
    Blame,
    ClientDeadlineExceeded,
    GatewayError,
    StatusCode,
    StatusRow,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.health.outcome import Outcome
from gateway.routing.types import Request
from gateway.upstream.base import UpstreamResponse

_BY_BLAME = {
    Blame.NONE: Outcome.SUCCESS,
    Blame.CLIENT: Outcome.NEUTRAL,
    Blame.WORKER: Outcome.ERROR,
}


@pytest.mark.parametrize("row", STATUS_TABLE, ids=lambda r: r.code.name)
def test_answers_follow_the_table_whatever_the_protocol(row: StatusRow) -> None:
    want = _BY_BLAME[row.blame]
    assert outcome_of(UpstreamResponse.from_grpc(row.code, b"")) is want
    assert outcome_of(UpstreamResponse.from_http(row.http, b"")) is want


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.SUCCESS), (400, Outcome.NEUTRAL), (404, Outcome.NEUTRAL),
     (413, Outcome.NEUTRAL), (499, Outcome.NEUTRAL), (500, Outcome.ERROR),
     (502, Outcome.ERROR), (503, Outcome.ERROR), (504, Outcome.ERROR)],
)  # fmt: skip
def test_http_statuses(status: int, outcome: Outcome) -> None:
    assert outcome_of(UpstreamResponse.from_http(status, b"")) is outcome


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(UpstreamConnectError("refused"), Outcome.CONNECT),
     (UpstreamTimeout("slow"), Outcome.TIMEOUT),
     (UpstreamError("reset"), Outcome.ERROR),
     (ClientDeadlineExceeded("the client's deadline"), Outcome.NEUTRAL),
     (None, Outcome.NEUTRAL)],
)  # fmt: skip
def test_raised_and_cancelled(error: GatewayError | None, outcome: Outcome) -> None:
    assert outcome_of(error) is outcome
    if outcome in UPSTREAM_ERROR_KIND:
        assert UPSTREAM_ERROR_KIND[outcome] in {"connect", "timeout", "reset"}


class _View:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def finish(
        self, worker: str, req: Request, service_ms: float, latency_ms: float | None, now: float
    ) -> None:
        self.calls.append(("finish", latency_ms))

    def abandon(self, worker: str, req: Request, service_ms: float, now: float) -> None:
        self.calls.append(("abandon", None))


@pytest.mark.parametrize(
    ("outcome", "latency", "call"),
    [(Outcome.SUCCESS, 12.0, ("finish", 12.0)), (Outcome.NEUTRAL, 3.0, ("abandon", None)),
     (Outcome.NEUTRAL, None, ("abandon", None)), (Outcome.ERROR, 5.0, ("finish", None)),
     (Outcome.TIMEOUT, None, ("finish", None)), (Outcome.CONNECT, None, ("finish", None))],
)  # fmt: skip
def test_finish_view(outcome: Outcome, latency: float | None, call: tuple[str, object]) -> None:
    view = _View()
    finish_view(view, "w", Request("m", 10.0), 1.0, outcome, latency, 0.0)
    assert view.calls == [call]


def test_triton_internal_code_for_unparsable_data_is_the_clients() -> None:
    from gateway.core.validate import triton_client_error

    body = b'{"error":"Unable to parse \'data\': attempt to access JSON non-number as double"}'
    for resp in (
        UpstreamResponse.from_http(500, body),
        UpstreamResponse.from_grpc(StatusCode.INTERNAL, body),
    ):
        fixed = triton_client_error(resp)
        assert (fixed.code, fixed.http_status, fixed.body) == (
            StatusCode.INVALID_ARGUMENT,
            400,
            body,
        )
        assert outcome_of(fixed) is Outcome.NEUTRAL
    broken = UpstreamResponse.from_http(500, b'{"error":"in ensemble \'m\', device lost"}')
    assert triton_client_error(broken) is broken and outcome_of(broken) is Outcome.ERROR


def test_service_config_is_the_settings_slice() -> None:
    """Every ``ServiceConfig`` field is a ``Settings`` field with the same default."""
    from dataclasses import fields

    from gateway.core.calls import ServiceConfig
    from gateway.settings import ModelDefaults, Settings, WorkerSpec

    default = ServiceConfig()
    for f in fields(ServiceConfig):
        assert f.name in Settings.model_fields, f.name
        want = Settings.model_fields[f.name].get_default(call_default_factory=True)
        assert getattr(default, f.name) == want, f.name
    settings = Settings(
        workers=[WorkerSpec(id="w", pool="p", arch="a", url="http://127.0.0.1:1", models=["m"])],
        models={"m": ModelDefaults(slo_ms=7)},
        max_inflight=3,
        retry_min_per_s=0.5,
    )
    cfg = ServiceConfig.from_settings(settings)
    assert (cfg.max_inflight, cfg.retry_min_per_s, cfg.models["m"].slo_ms) == (3, 0.5, 7)
