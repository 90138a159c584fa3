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
    #: (naturalWidth, naturalHeight) of every <img>; (0, 0) for one that failed to decode
    images: list[tuple[int, int]] = field(default_factory=list)
    #: per <section>: its heading, its answer line ("" if none), charts and images in it
    sections: list[dict] = field(default_factory=list)
    #: per-section screenshots, in page order (when ``sections_dir`` was given)
    section_screenshots: list[Path] = field(default_factory=list)


def render_report(path: Path, screenshot: Path, sections_dir: Path | None = None) -> Rendered:
    """Load ``path``, wait for every chart, save a full-page screenshot.

    With ``sections_dir``, also save one screenshot per ``<section>`` there
    (``section-0.png``, ...), to look at each answer with its chart.

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
        page.evaluate(
            "() => Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))"
        )
        out.images = [
            tuple(wh)
            for wh in page.evaluate(
                "() => Array.from(document.images).map(i => [i.naturalWidth, i.naturalHeight])"
            )
        ]
        out.sections = page.evaluate(
            """() => Array.from(document.querySelectorAll('section')).map(s => ({
                title: s.querySelector('h2') ? s.querySelector('h2').textContent : '',
                answer: s.querySelector('p.answer') ? s.querySelector('p.answer').textContent : '',
                caption: s.querySelector('p.caption') ? s.querySelector('p.caption').textContent : '',
                charts: s.querySelectorAll('div.chart').length,
                svgs: s.querySelectorAll('div.chart svg').length,
                images: s.querySelectorAll('img').length,
            }))"""
        )
        page.screenshot(path=str(screenshot), full_page=True)
        if sections_dir is not None:
            sections_dir.mkdir(parents=True, exist_ok=True)
            for i, element in enumerate(page.query_selector_all("section")):
                shot = sections_dir / f"section-{i}.png"
                element.screenshot(path=str(shot))
                out.section_screenshots.append(shot)
        browser.close()
    return out
