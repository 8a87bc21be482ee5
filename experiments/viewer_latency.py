"""`prospero view`'s latency: from a wheel zoom in the browser to the new image on screen.

    python experiments/viewer_latency.py --zooms 30

Headless Chromium (Debian's) driven by Playwright, a viewport whose stage is 1024 px square
(so a 2-D view is a 1024² render; a solid's is 256², stretched); each zoom alternates in
and out around the centre (new views, never cached), and the time is taken from just before
the wheel event to the moment the page shows the new view's image (the page waits 40 ms for
more wheel events before it asks). Prints the median and 95th percentile per model.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from prospero_jax.io import viewer as _viewer

SHARED = Path(__file__).resolve().parents[2] / "shared"
LOADED = (
    "() => { const p = document.getElementById('picture');"
    " return p.complete && p.naturalWidth > 0 && p.dataset.view !== undefined; }"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zooms", type=int, default=30)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    models = {"prospero": SHARED / "prospero.vm", "bear (solid)": SHARED / "models" / "bear.vm"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for name, path in models.items():
            running = _viewer.view(path)
            page = browser.new_page(viewport={"width": 1348, "height": 1024})  # stage: 1024²
            page.goto(running.url)
            page.wait_for_function(LOADED, timeout=120_000)
            page.mouse.move(512, 512)
            times = []
            for i in range(args.zooms + 2):  # the first two compile: not counted
                view = page.get_attribute("#picture", "data-view")
                started = time.perf_counter()
                page.mouse.wheel(0, -120 if i % 2 else 150)
                page.wait_for_function(
                    f"() => {{ const p = document.getElementById('picture');"
                    f" return p.dataset.view !== {view!r} && p.complete; }}",
                    timeout=120_000,
                )
                if i >= 2:
                    times.append(time.perf_counter() - started)
            size = running.last.get("size")
            p95 = sorted(times)[int(0.95 * (len(times) - 1))]
            print(f"{name}: {size}² views, {len(times)} zooms: median "
                  f"{statistics.median(times) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms")  # fmt: skip
            page.close()
            running.close()
        browser.close()


if __name__ == "__main__":
    main()
