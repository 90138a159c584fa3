"""Open a cellframe HTML report in headless Chromium with the network blocked."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Rendered:
    """What the browser saw."""

    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    rendered: int = 0
    svgs_per_chart: list[int] = field(default_factory=list)


def render_report(path: Path, screenshot: Path) -> Rendered:
    """Load ``path``, wait for every chart, save a full-page screenshot.

    Skips the calling test when Debian's chromium or Playwright is missing.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    out = Rendered()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})

        def block(route) -> None:  # the report must not need the network
            out.blocked_requests.append(route.request.url)
            route.abort()

        page.route("http*://**", block)
        page.on(
            "console", lambda m: out.console_errors.append(m.text) if m.type == "error" else None
        )
        page.on("pageerror", lambda e: out.console_errors.append(str(e)))
        page.goto(path.resolve().as_uri())
        page.evaluate("() => window.cellframeDone")
        out.errors = page.evaluate("() => window.cellframeErrors")
        out.rendered = page.evaluate("() => window.cellframeRendered")
        out.svgs_per_chart = page.evaluate(
            "() => Array.from(document.querySelectorAll('div.chart'))"
            ".map(d => d.querySelectorAll('svg').length)"
        )
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return out
