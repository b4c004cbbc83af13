from __future__ import annotations

import itertools

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.responses import Response

from gateway.ui import ANY_PRIORITY, CounterSample, ui_router


class CountingStats:
    def __init__(self) -> None:
        self.n = 0

    async def sample(self) -> CounterSample:
        self.n += 1
        return CounterSample(requests={("m", ANY_PRIORITY): 10.0 * self.n})


class BrokenStats:
    async def sample(self) -> CounterSample:
        raise ConnectionError("redis went away")


def app_with(stats: object = None) -> FastAPI:
    app = FastAPI()
    ticks = itertools.count(0, 1.0)
    app.include_router(ui_router(stats, clock=lambda: next(ticks)))  # type: ignore[arg-type]
    return app


def test_page_and_assets_are_served_without_external_urls() -> None:
    client = TestClient(app_with(CountingStats()))
    page = client.get("/synergai/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="ui/static/app.js"' in page.text  # relative: works behind a path prefix
    for name, kind in (("app.js", "javascript"), ("charts.js", "javascript"), ("style.css", "css")):
        r = client.get(f"/synergai/ui/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in r.text
    redirect = client.get("/synergai/ui/", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == "../ui"
    assert client.get("/synergai/ui/").url.path == "/synergai/ui"


def test_unknown_or_traversing_asset_is_404() -> None:
    client = TestClient(app_with(CountingStats()))
    assert client.get("/synergai/ui/static/nope.js").status_code == 404
    assert client.get("/synergai/ui/static/..%2F__init__.py").status_code == 404


def test_stats_from_an_explicit_source() -> None:
    client = TestClient(app_with(CountingStats()))
    assert client.get("/synergai/v1/stats").json()["t"] == []
    body = client.get("/synergai/v1/stats").json()
    assert body["available"] and body["requests_rps"] == {"m": [10.0]}


def test_stats_source_failure_is_reported_not_raised() -> None:
    body = TestClient(app_with(BrokenStats())).get("/synergai/v1/stats").json()
    assert body["available"] is False and "redis went away" in body["error"]


def test_default_source_scrapes_the_apps_own_metrics() -> None:
    reg = CollectorRegistry()
    requests = Counter(
        "synergai_requests_total", "", ["model", "pool", "worker", "policy", "code"], registry=reg
    )
    app = app_with()

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)

    client = TestClient(app)
    client.get("/synergai/v1/stats")
    requests.labels("m", "p", "w", "synergai", "200").inc(5)
    body = client.get("/synergai/v1/stats").json()
    assert body["available"] and body["requests_rps"] == {"m": [5.0]}


def test_default_source_without_metrics_endpoint_is_unavailable() -> None:
    body = TestClient(app_with()).get("/synergai/v1/stats").json()
    assert body["available"] is False and "404" in body["error"]
