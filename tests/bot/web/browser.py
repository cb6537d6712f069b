"""A real headless Chromium (Debian's package) driven through chromedriver, off the event loop.

Selenium is told where the driver and the browser are, so it never downloads anything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
T = TypeVar("T")
LIVE_REDRAW_TRIES = 5
GONE_NODE = "does not belong to the document"
# What headless Chromium starts and no test uses: a renderer for the omnibox popups' WebUI (~0.6 s of CPU per
# session in these tests) and a spare renderer kept warm for the next site. Together ~25 % of the CPU that
# the three browser test files cost, measured with process accounting.
UNUSED_FEATURES = "WebUIOmniboxPopup,WebUIOmniboxAimPopup,SpareRendererForSitePerProcess"

needs_chromium = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(DRIVER)),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def _names_a_gone_node(exc: WebDriverException) -> bool:
    """Chromium reports a node that left the page either as stale or, mid-navigation, as an inspector error."""
    return isinstance(exc, StaleElementReferenceException) or GONE_NODE in str(exc)


def _is_gone(element: Any) -> bool:
    """True once ``element`` no longer belongs to the page (selenium's ``staleness_of`` knows only one wording)."""
    try:
        element.is_enabled()
    except WebDriverException as exc:
        if _names_a_gone_node(exc):
            return True
        raise
    return False


def _again_if_redrawn(read: Callable[[], T]) -> T:
    """Run ``read``; a live update may redraw the page between finding a node and using it (the node is then
    gone), so it is run again, a few times at most."""
    for _ in range(LIVE_REDRAW_TRIES - 1):
        try:
            return read()
        except WebDriverException as exc:
            if not _names_a_gone_node(exc):
                raise
    return read()


class Browser:
    """One browser window; every call runs in a worker thread so the product keeps serving."""

    def __init__(self, driver: webdriver.Chrome, shots: Path) -> None:
        self._driver = driver
        self._shots = shots

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self._run(self._driver.get, url)

    async def click(self, css: str, navigates: bool = True) -> None:
        """Click; when it ``navigates`` (a form's button), wait until the next page replaced this one."""

        def run() -> None:
            old = self._driver.find_element(By.TAG_NAME, "html")
            # A click that met a gone node never reached the page, so it is safe to find the button again.
            _again_if_redrawn(lambda: self._driver.find_element(By.CSS_SELECTOR, css).click())
            if navigates:
                WebDriverWait(self._driver, 10).until(lambda _: _is_gone(old))
                WebDriverWait(self._driver, 10).until(
                    lambda d: d.execute_script("return document.readyState") == "complete"
                )

        await self._run(run)

    async def type(self, css: str, text: str) -> None:
        element = await self._run(self._driver.find_element, By.CSS_SELECTOR, css)
        await self._run(element.clear)
        await self._run(element.send_keys, text)

    async def text(self, css: str = "body") -> str:
        """The text of the first element matching ``css``, read again if a live update redrew it meanwhile."""
        return await self._run(_again_if_redrawn, lambda: str(self._driver.find_element(By.CSS_SELECTOR, css).text))

    async def count(self, css: str) -> int:
        return len(await self._run(self._driver.find_elements, By.CSS_SELECTOR, css))

    async def attr(self, css: str, name: str) -> list[str]:
        elements = await self._run(self._driver.find_elements, By.CSS_SELECTOR, css)
        return [str(await self._run(e.get_attribute, name)) for e in elements]

    async def choose(self, css: str, value: str) -> None:
        """Pick the option with ``value`` in a select list, as a tap would."""
        element = await self._run(self._driver.find_element, By.CSS_SELECTOR, css)
        await self._run(Select(element).select_by_value, value)

    async def script(self, js: str, *args: Any) -> Any:
        """Run JavaScript in the page and return its value."""
        return await self._run(self._driver.execute_script, js, *args)

    async def until(self, js: str, timeout: float = 10.0) -> None:
        """Wait until ``js`` (an expression) is true in the page: the DOM is watched, nothing is slept on."""
        await self._run(lambda: WebDriverWait(self._driver, timeout).until(lambda d: d.execute_script(f"return {js}")))

    async def new_tab(self) -> str:
        """Open a second tab and switch to it; returns the first tab's handle."""
        first = str(self._driver.current_window_handle)
        await self._run(self._driver.switch_to.new_window, "tab")
        return first

    async def switch(self, handle: str) -> None:
        await self._run(self._driver.switch_to.window, handle)

    @property
    def url(self) -> str:
        return str(self._driver.current_url)

    async def cookies(self) -> list[dict[str, Any]]:
        return list(await self._run(self._driver.get_cookies))

    async def screenshot(self, name: str, full: bool = True) -> Path:
        """A PNG of the page (the whole height when ``full``) under the test's tmp dir."""
        path = self._shots / f"{name}.png"

        def shoot() -> None:
            size = self._driver.get_window_size()
            if full:
                height = self._driver.execute_script("return document.documentElement.scrollHeight")
                self._driver.set_window_size(size["width"], max(int(height) + 20, size["height"]))
            self._driver.save_screenshot(str(path))
            self._driver.set_window_size(size["width"], size["height"])

        await self._run(shoot)
        return path


@asynccontextmanager
async def chromium(shots: Path, width: int = 412, height: int = 915, javascript: bool = True) -> AsyncIterator[Browser]:
    """Headless Chromium at a phone's size (JavaScript on: live updates must not get in the way; off: the
    pages must work as plain forms)."""
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars",
                f"--disable-features={UNUSED_FEATURES}"):  # fmt: skip
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    # Chromium's profile and its singleton socket go in a folder of this session's own, removed after it: they
    # were left in the system's temp folder, one per session.
    scratch = await asyncio.to_thread(tempfile.mkdtemp, prefix="chromium-")
    service = Service(executable_path=DRIVER, env={**os.environ, "TMPDIR": scratch})
    try:
        driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=service)
        try:
            yield Browser(driver, shots)
        finally:
            await asyncio.to_thread(driver.quit)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch)
