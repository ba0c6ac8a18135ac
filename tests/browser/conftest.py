"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against `frameq api`
processes (embedded mode, each with its own FRAMEQ_HOME). Screenshots of the pages go to
test-artifacts/dashboard/ for people to look at."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.api.server import ApiServer
from tests.conftest import IN_CI, ROOT

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: nothing is downloaded for the tests
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"


@pytest.fixture(scope="session", autouse=True)
def _chromium() -> None:
    if not CHROMIUM.is_file():
        reason = f"the dashboard tests need Chromium at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def _server(home: Path, local_workers: int) -> ApiServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env |= {"FRAMEQ_HOME": str(home / "home"), "FRAMEQ_MAX_UPLOAD_MB": "16"}
    return ApiServer(env, home / "api.log", local_workers=local_workers)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server with one local worker: its jobs run."""
    server = _server(tmp_path_factory.mktemp("dashboard"), 1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idle_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server without a worker: its jobs stay queued for as long as a test needs them to."""
    server = _server(tmp_path_factory.mktemp("dashboard-idle"), 0)
    yield server
    server.stop()


# Module-scoped: Playwright's sync API runs an event loop in this thread while it lives, which
# later tests calling asyncio.run would meet.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the page's console reported as errors (and uncaught exceptions), in order."""
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    """A tab in a fresh browser context: no cookies yet."""
    context = browser.new_context(viewport={"width": 1180, "height": 820}, accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()

    def note(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    tab.on("console", note)
    tab.on("pageerror", lambda exc: console_errors.append(str(exc)))
    yield tab
    context.close()


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    def take(tab: Page, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take
