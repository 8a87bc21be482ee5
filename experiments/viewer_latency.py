"""`prospero view`'s latency: from a wheel zoom in the browser to the new image on screen.

    python experiments/viewer_latency.py --zooms 20 --pattern in
    python experiments/viewer_latency.py --zooms 20 --pattern in-out

Headless Chromium (Debian's) driven by Playwright, a viewport whose stage is 1024 px square.
A 2-D view is drawn as 256² tiles on a power-of-two grid (the missing ones of a view
rendered as one square and cut up in the page; tiles already loaded come from its cache); a
solid's view is one 256² lit heightmap, stretched. ``--pattern in`` zooms in at every step
around the centre (a new view each time; tiles are reused until the grid's level changes),
``in-out`` alternates in and out. Each time is from just before the wheel event to the new
view fully drawn (the page waits 40 ms for more wheel events before a solid's request).
Prints the median and 95th percentile per model, after two zooms that compile.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from viewer import server as _viewer

SHARED = Path(__file__).resolve().parents[2] / "shared"
# A 2-D view is in when all its tiles are; a solid's when its picture shows the view.
LOADED = {
    False: "() => { const t = document.getElementById('tiles');"
    " return Number(t.dataset.wanted) > 0 && t.dataset.loaded === t.dataset.wanted"
    " && [...t.children].every((img) => img.complete); }",
    True: "() => { const p = document.getElementById('picture'), t = document.getElementById("
    "'tiles'); return p.complete && p.naturalWidth > 0 && p.dataset.view === t.dataset.view; }",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zooms", type=int, default=30)
    parser.add_argument(
        "--pattern", choices=("in", "in-out"), default="in",
        help="in: every zoom a new view (nothing cached); in-out: alternate (every other cached)",
    )  # fmt: skip
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    models = {"prospero": SHARED / "prospero.vm", "bear (solid)": SHARED / "models" / "bear.vm"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for name, path in models.items():
            running = _viewer.serve(path)
            running.ready()
            page = browser.new_page(viewport={"width": 1348, "height": 1024})  # stage: 1024²
            solid = running.state()["solid"]
            page.goto(running.url)
            page.wait_for_function(LOADED[solid], timeout=120_000)
            page.mouse.move(512, 512)
            times = []
            for i in range(args.zooms + 2):  # the first two compile: not counted
                view = page.get_attribute("#tiles", "data-view")
                started = time.perf_counter()
                page.mouse.wheel(0, -120 if args.pattern == "in" or i % 2 else 120)
                page.wait_for_function(
                    f"() => document.getElementById('tiles').dataset.view !== {view!r}",
                    timeout=120_000,
                )
                page.wait_for_function(LOADED[solid], timeout=120_000)
                if i >= 2:
                    times.append(time.perf_counter() - started)
            size = running.last.get("size")  # the last render's: a tile's, or the solid's view
            p95 = sorted(times)[int(0.95 * (len(times) - 1))]
            print(f"{name}: {size}² renders, {len(times)} zooms: median "
                  f"{statistics.median(times) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms")  # fmt: skip
            page.close()
            running.close()
        browser.close()


if __name__ == "__main__":
    main()
