"""``loadtest.run_locust``: the command line it builds, and a real headless locust run."""

from __future__ import annotations

import os

os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")  # see test_locust_shapes.py

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from loadtest import shapes
from loadtest.run_locust import SHAPE_NAMES, locust_command, main, summary


def test_shape_names_match_the_shapes_module() -> None:
    assert tuple(sorted(shapes.SHAPES)) == SHAPE_NAMES


def test_command_is_headless_bounded_and_writes_csv(tmp_path: Path) -> None:
    cmd = locust_command(
        "http://127.0.0.1:8080",
        run_time_s=15,
        users=4,
        spawn_rate=2,
        shape="diurnal",
        protocol="both",
        csv_prefix=tmp_path / "x",
        grpc_target="127.0.0.1:8081",
    )
    joined = " ".join(cmd)
    assert "--headless" in cmd
    assert "--run-time 15s" in joined
    assert f"--csv {tmp_path / 'x'}" in joined
    assert "--shape diurnal" in joined
    assert "--grpc-target 127.0.0.1:8081" in joined
    assert cmd[-2:] == ["RestUser", "GrpcUser"]


class _Fake:
    def __init__(self) -> None:
        self.hints: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _infer(self, request: web.Request) -> web.Response:
        self.hints.append(request.headers.get("x-slo-ms", ""))
        await request.read()
        return web.json_response({"outputs": []})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v2/models/{model}/infer", self._infer)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> _Fake:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def fake() -> Iterator[_Fake]:
    with _Fake() as f:
        yield f


@pytest.mark.integration
def test_headless_run_against_a_fake_gateway(fake: _Fake, tmp_path: Path) -> None:
    prefix = tmp_path / "run"
    rc = main(
        [
            "--host",
            f"http://127.0.0.1:{fake.port}",
            "--run-time",
            "4",
            "--users",
            "3",
            "--user-rps",
            "5",
            "--shape",
            "constant",
            "--csv",
            str(prefix),
        ]
    )
    assert rc == 0
    rows = {r["Name"]: r for r in summary(prefix)}
    assert "Aggregated" in rows
    assert int(rows["Aggregated"]["Request Count"]) >= 10
    # The fake answers at once, so a failure can only be an answer that a loaded 2-core CI
    # machine delivered later than its SLO: tolerate a few, never a majority.
    failures = int(rows["Aggregated"]["Failure Count"])
    assert failures <= int(rows["Aggregated"]["Request Count"]) // 5
    assert any(name.startswith("infer ") for name in rows)
    # the demo scenario's SLOs at time_scale 3: 120, 150 and 75 ms
    assert set(fake.hints) <= {"120", "150", "75"} and fake.hints
