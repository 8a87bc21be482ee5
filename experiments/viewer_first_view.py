"""The viewer's first view: a fresh `prospero view` server's first image, request to PNG.

    python experiments/viewer_first_view.py --models bear,colonnade,tanglecube --rounds 3

Each round, per model, two fresh processes (the disk caches warm, as after any earlier
run): in one the page's first request (``viewer.server.FIRST_VIEW``, what
``static/viewer.html`` asks first: 256², ±1, yaw and pitch 0) comes as soon as the file is
read; in the other once the server has drawn that view unseen (``Viewer.prepared``: as
when the browser takes longer to open than the server to prepare). Each then asks for a
second, turned view. Printed per model: the medians over rounds of the seconds from the
server's start to its file read and to ``prepared``, and of each request's latency (HTTP,
PNG encode), with the worst round's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT.parent / "shared" / "models"

WORKER = """
import json, sys, time, urllib.request
import prospero_jax as pj
from viewer import server as _viewer
path, wait = sys.argv[1], sys.argv[2] == "prepared"
pj.enable_compilation_cache()  # as `prospero view` runs
started = time.perf_counter()
running = _viewer.serve(path)
running.ready(120)
read = time.perf_counter() - started
prepared = None
if wait:
    running.prepared.wait(300)
    prepared = time.perf_counter() - started
def ask(yaw, pitch):
    query = f"x0=-1&x1=1&y0=-1&y1=1&size=256&yaw={yaw}&pitch={pitch}"
    began = time.perf_counter()
    with urllib.request.urlopen(running.url + "api/render?" + query, timeout=300) as reply:
        assert reply.status == 200
        reply.read()
    return time.perf_counter() - began
first, second = ask(0, 0), ask(31, -17)
running.close()
print(json.dumps({"read": read, "prepared": prepared, "first": first, "second": second}))
"""


def run(model: Path, wait: str) -> dict[str, float | None]:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(model), wait],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, float | None] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


#: The columns: a result's key, its scale (seconds or milliseconds) and digits.
SPECS = [("read", 1.0, 2), ("prepared", 1.0, 2), ("first", 1e3, 0), ("second", 1e3, 0)]


def cell(rounds: list[dict[str, float | None]], key: str, scale: float, digits: int) -> str:
    """The median over rounds of ``key`` and its worst round, scaled ("–" if none)."""
    values = [value for r in rounds if (value := r[key]) is not None]
    if not values:
        return "–"
    median, worst = statistics.median(values), max(values)
    return f"{scale * median:.{digits}f} (worst {scale * worst:.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bear,colonnade,tanglecube")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        "| model | first request comes | file read (s) | prepared (s) | first view (ms) "
        "| second view (ms) |\n|---|---|---|---|---|---|"
    )
    for name in args.models.split(","):
        for wait in ("at once", "prepared"):
            rounds = [run(MODELS / f"{name}.vm", wait) for _ in range(args.rounds)]
            cells = [cell(rounds, *spec) for spec in SPECS]
            print(f"| {name} | {wait} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
