"""`prospero view` in a real browser: headless Chromium (Debian's) driven by Playwright.

The page loads and its image appears, a wheel zoom changes the view and brings a new
image, an edit of the file redraws it, and a broken file shows ``FILE:LINE: message``
while the last good image stays. ``.ci/run`` installs Chromium when it is missing; outside
CI the test is skipped without one. ``PROSPERO_SCREENSHOT=path`` keeps a screenshot (the
README's comes from here).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import shared_path
from viewer import server as _viewer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no Chromium here (.ci/run installs it)", allow_module_level=True)
from playwright.sync_api import Page, sync_playwright  # noqa: E402 (after the skip)


@pytest.fixture
def page() -> Iterator[Page]:
    assert CHROMIUM is not None, "CI needs Chromium: .ci/run installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 900, "height": 600})
        yield tab
        browser.close()


LOADED = (
    "() => { const t = document.getElementById('tiles');"
    " return t.dataset.view !== undefined && Number(t.dataset.wanted) > 0"
    " && t.dataset.loaded === t.dataset.wanted"
    " && [...t.children].every((img) => img.complete && img.naturalWidth > 0); }"
)
SOURCES = "() => [...document.getElementById('tiles').children].map((img) => img.src).join(' ')"


def test_the_viewer_in_a_browser(page: Page, tmp_path: Path) -> None:
    program = tmp_path / "hi.vm"
    shutil.copy(shared_path("models/hi.vm"), program)
    running = _viewer.serve(program)
    try:
        page.goto(running.url)
        page.wait_for_function(LOADED, timeout=60_000)  # the tiles of the first view are in
        first = page.evaluate(SOURCES)
        view = page.get_attribute("#tiles", "data-view")

        # Zoom with the wheel over the picture: a new view, new tiles.
        page.mouse.move(300, 300)
        page.mouse.wheel(0, -400)
        page.wait_for_function(
            f"() => document.getElementById('tiles').dataset.view !== {view!r}", timeout=60_000
        )
        page.wait_for_function(LOADED, timeout=60_000)
        zoomed = page.evaluate(SOURCES)
        assert zoomed != first

        # An edit redraws it (the value negated: inside and outside swap).
        text = program.read_text()
        last = text.strip().splitlines()[-1].split()[0]
        program.write_text(text + f"\n_flip neg {last}\n")
        page.wait_for_function(f"() => ({SOURCES})() !== {zoomed!r}", timeout=60_000)
        page.wait_for_function(LOADED, timeout=60_000)

        # A broken file: its error on the page, the picture kept.
        shown = page.evaluate(SOURCES)
        program.write_text(text + "\n_bad frob 1 2\n")
        page.wait_for_selector("#error", state="visible", timeout=30_000)
        # write_text is not atomic: the watcher may see the file truncated first (an
        # empty program, shown as such), then whole, and show the line's error.
        expected = json.dumps(f"{program}:59: ")
        page.wait_for_function(
            f"() => document.getElementById('error').innerText.startsWith({expected})",
            timeout=30_000,
        )
        error = page.inner_text("#error")
        assert error.startswith(f"{program}:59: ")
        assert page.evaluate(SOURCES) == shown
        if os.environ.get("PROSPERO_SCREENSHOT"):  # the fixed file, the whole view
            program.write_text(text)
            page.wait_for_selector("#error", state="hidden", timeout=30_000)
            page.keyboard.press("0")
            reset = '{"cx":0,"cy":0,"half":1,"yaw":0,"pitch":0}'
            page.wait_for_function(
                f"() => document.getElementById('tiles').dataset.view === {reset!r}",
                timeout=60_000,
            )
            page.wait_for_function(LOADED, timeout=60_000)
            page.screenshot(path=os.environ["PROSPERO_SCREENSHOT"])
    finally:
        running.close()
