"""A real Chromium (Debian's `chromium`) driven by Playwright, for the page tests.

Playwright's own browser download does not work here, so the system Chromium is launched
by path. Every page opened through `open_page` records script errors (uncaught exceptions
and console errors); `Browser.assert_clean()` fails the test on any of them.
Missing Chromium or Playwright: the test fails under CI=true, else it is skipped with the
install command.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.real import real

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
INSTALL_HINT = "needs Chromium and Playwright: apt-get install chromium && pip install playwright"
# the README's screenshots are refreshed by `make screenshots` (sets this variable); a plain
# test run writes them to a scratch directory so it leaves the work tree as it was
SCREENSHOTS = Path(
    os.environ.get("DEPLOYBOT_SCREENSHOTS") or tempfile.gettempdir() + "/deploybot-screenshots"
)


def require_chromium() -> None:
    missing = not Path(CHROMIUM).exists()
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)


@real
class Browser:
    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.errors: list[str] = []

    async def open_page(self, url: str | None = None) -> Any:
        page = await self.browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
        if url is not None:
            await page.goto(url)
        return page

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


@real
@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield Browser(browser)
        finally:
            await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot (under docs/screenshots/ with `make screenshots`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path
