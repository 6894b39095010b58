"""Running `shipyard dashboard` and Debian's Chromium (driven by Playwright) for the
dashboard's browser tests. Playwright's own browser builds are never used: the
browser is /usr/bin/chromium (scripts/browser-deps.sh installs it); without it, or
without the playwright package, the tests skip and say so.

Screenshots go to $SHIPYARD_TEST_ARTIFACTS/dashboard (default build/test-artifacts/
dashboard, ignored by git): CI keeps them as the run's artefacts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]


def artefacts() -> Path:
    base = Path(os.environ.get("SHIPYARD_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
    out = base / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dashboard(env: dict[str, str], *args: str, timeout: float = 60) -> Iterator[str]:
    """`shipyard dashboard --port P ARGS` as a subprocess; yields its base URL."""
    port = free_port()
    log = Path(env.get("SHIPYARD_HOME", "/tmp")) / f"dashboard-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "dashboard", "--port", str(port),
                                 *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the dashboard did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[object]:
    """A Playwright browser context on Debian's Chromium with a fresh profile."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run scripts/browser-deps.sh "
                    "(apt-get install chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' (playwright)")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900})
        ctx.set_default_timeout(20_000)
        try:
            yield ctx
        finally:
            ctx.close()


def shot(page: object, name: str) -> Path:
    path = artefacts() / f"{name}.png"
    # The page down to the end of its content (not the empty rest of the window).
    height = page.evaluate("Math.ceil(document.querySelector('main').getBoundingClientRect().bottom"  # type: ignore[attr-defined]
                           " + window.scrollY) + 8")
    width = page.evaluate("document.documentElement.clientWidth")  # type: ignore[attr-defined]
    page.screenshot(path=str(path), full_page=True,  # type: ignore[attr-defined]
                    clip={"x": 0, "y": 0, "width": width, "height": height})
    return path


def mark_page(page: object) -> None:
    """Set a marker a reload would wipe: a later `assert_not_reloaded` proves none happened."""
    page.evaluate("window.__noReload = 'still here'")  # type: ignore[attr-defined]


def assert_not_reloaded(page: object) -> None:
    assert page.evaluate("window.__noReload") == "still here", "the page was reloaded"  # type: ignore[attr-defined]
