"""Browser tier: headless Debian ``chromium`` against pages served on loopback.

Every test here is marked ``browser``; without ``chromium`` on PATH they skip (install it with
``apt-get install -y chromium``). Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gateway.core.net import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class Chromium:
    """Runs headless chromium once per call: a screenshot and/or the rendered DOM."""

    exe: str
    profile: Path

    def render(
        self,
        url: str,
        screenshot: Path | None = None,
        budget_ms: int = 2500,
        size: tuple[int, int] = (1400, 1000),
        timeout_s: float = 30.0,
    ) -> str:
        """Return the DOM after ``budget_ms`` of virtual time; save a PNG if asked."""
        base = [
            self.exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={self.profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
        ]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            base.append(f"--screenshot={screenshot}")
        out = subprocess.run(
            [*base, "--dump-dom", url], check=True, capture_output=True, timeout=timeout_s
        )
        if screenshot is not None:
            assert screenshot.is_file() and screenshot.stat().st_size > 10_000
        return out.stdout.decode()


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("browser tier: `chromium` not on PATH (apt-get install -y chromium)")
    return Chromium(exe, tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def serve() -> Callable[[Any], Any]:
    """``with serve(app) as base_url:`` runs an ASGI app on a loopback port in a thread."""
    return _serve
