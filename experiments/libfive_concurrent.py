"""Heightmaps with normals, ours and libfive's at the same time, one core each.

    ../shared/peers/libfive/build.sh LIBFIVE_SOURCE_DIR /tmp/libfive-build   # once, outside
    python experiments/libfive_concurrent.py --libfive /tmp/libfive-build/vm_bench \\
        --models colonnade,sphere --sizes 512,1024 --seconds 60

Why: this machine's cores change speed on their own, for seconds or minutes at a time
(libfive's colonnade 512³: ~0.07 s a render, then ~0.04 s; session 26), so two programs
timed one after the other can meet different machines, and a ratio of medians leans to
whichever side slowed more. Running both at once also takes away what our process got
from the second core when it ran alone (XLA's threads: the bear up to 1.39 cores).

Here both run at once, pinned to the two cores (``taskset``): libfive's ``vm_bench MODEL
hm N 1 HALF R`` (one thread) as a sequence of short processes, each a window of
~``--window`` seconds, and a warm process of ours (``pj.render_heightmap(program, N,
region=±HALF, normals=True)``, depth ``D = N``, float32, freed arrays reused as the CLI
does) rendering back to back meanwhile, each render timestamped. A window's ratio is the
median of our renders that began and ended inside it over libfive's median in it.
Halfway the two swap cores (each core has a worker of ours, warmed before the clock
starts), so a difference between the cores is sampled too.

Printed per model and size: every window (libfive's median, ours, the ratio), then the
ratio's median over all windows [quartiles]; each side's fast state, the windows where
it ran within :data:`FAST` of its quickest (a core of this machine runs ~1.5× faster for
seconds or minutes at a time, each core on its own: a side that slows more under load
gains from the load, so the fast states' ratio is the machine at its quickest), their
medians' ratio; and the ratio in windows where both sides ran fast. Regions as in
``../shared/peers/README.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from libfive_peer import HALF, LineWorker, model_path

#: A worker of ours pinned to a core: warm (compiled, steady), then per line read
#: ("SECONDS"), renders back to back for that long and prints each render's monotonic
#: start and end.
WORKER = """
import json, sys, time
import prospero_jax as pj
model, size, half = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
pj.reuse_freed_memory()
program = pj.load(model)
region = (-half, half, -half, half)
run = lambda: pj.render_heightmap(program, size, region=region, normals=True)
warm, frames = time.monotonic(), 0
while frames < 5 or time.monotonic() - warm < 3:
    run(); frames += 1
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    until, spans = time.monotonic() + float(line), []
    while time.monotonic() < until:
        begin = time.monotonic(); run(); spans.append((begin, time.monotonic()))
    print(json.dumps({"spans": spans}), flush=True)
"""


class Worker(LineWorker):
    """A warm process of ours, pinned to ``core``."""

    def __init__(self, path: Path, size: int, half: float, core: int):
        command = ["taskset", "-c", str(core), sys.executable, "-c", WORKER]
        super().__init__([*command, str(path), str(size), str(half)])
        self.read()  # ready

    def spans(self) -> list[tuple[float, float]]:
        return [tuple(s) for s in self.read()["spans"]]  # type: ignore[attr-defined]


def libfive_windows(
    libfive: Path, path: Path, size: int, half: float, core: int, seconds: float, repeats: int
) -> list[tuple[float, float, float]]:
    """libfive's processes, one after another for ``seconds``: each one's monotonic start
    and end and its median render (``repeats`` renders after a warm-up render); at least
    one."""
    until = time.monotonic() + seconds
    windows: list[tuple[float, float, float]] = []
    while not windows or time.monotonic() < until:
        command = ["taskset", "-c", str(core), str(libfive), str(path), "hm", str(size)]
        begin = time.monotonic()
        out = subprocess.run(
            [*command, "1", str(half), str(repeats)], check=True, capture_output=True, text=True
        ).stdout
        end = time.monotonic()
        windows.append((begin, end, float(json.loads(out.strip().splitlines()[-1])["median_s"])))
    return windows


def paired(
    windows: list[tuple[float, float, float]], spans: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Per libfive window holding at least two of our renders: (libfive's median, ours)."""
    pairs = []
    for begin, end, theirs in windows:
        ours = [b - a for a, b in spans if a >= begin and b <= end]
        if len(ours) >= 2:
            pairs.append((theirs, statistics.median(ours)))
    return pairs


#: A window is in its side's fast state within this factor of the side's quickest windows
#: (their 5th percentile).
FAST = 1.15


def summary(pairs: list[tuple[float, float]]) -> str:
    """The ratio's median [quartiles] over all windows; each side's fast state (its windows
    within :data:`FAST` of its quickest) and their medians' ratio; the ratio's median over
    the windows where both ran fast."""
    ratios = [o / t for t, o in pairs]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    text = f"all {len(pairs)} windows: ours ÷ libfive {median:.2f} [{q1:.2f}–{q3:.2f}]"
    sides = list(zip(*pairs, strict=True))
    limits = [FAST * statistics.quantiles(side, n=20)[0] for side in sides]
    fast = [[t for t in side if t < limit] for side, limit in zip(sides, limits, strict=True)]
    theirs, ours = (statistics.median(f) for f in fast)
    text += (
        f"; fast windows: libfive {len(fast[0])} (median {theirs:.4f} s), ours "
        f"{len(fast[1])} ({ours:.4f} s), ours ÷ libfive {ours / theirs:.2f}"
    )
    both = [o / t for t, o in pairs if t < limits[0] and o < limits[1]]
    if both:
        text += f"; both fast in {len(both)} windows: {statistics.median(both):.2f}"
        text += f" [{min(both):.2f}–{max(both):.2f}]"
    return text


def resummarise(log: Path) -> None:
    """The summaries of a run's printed windows (``log``), as :func:`summary` gives them."""
    cases: dict[str, list[tuple[float, float]]] = {}
    for line in log.read_text().splitlines():
        found = re.match(r"(\S+ \d+) \(ours on core \d\): libfive (\S+) s, ours (\S+) s", line)
        if found:
            case, theirs, ours = found.groups()
            cases.setdefault(case, []).append((float(theirs), float(ours)))
    for case, pairs in cases.items():
        print(f"{case}³: {summary(pairs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libfive", type=Path, default=Path("/tmp/libfive-build/vm_bench"))
    parser.add_argument("--models", default="colonnade,sphere")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--seconds", type=float, default=60, help="per model and size")
    parser.add_argument("--window", type=float, default=1.0, help="libfive process, ~s")
    parser.add_argument("--summarise", type=Path, help="a run's output: its summaries again")
    args = parser.parse_args()
    if args.summarise:
        resummarise(args.summarise)
        return
    if not args.libfive.exists():
        sys.exit(f"{args.libfive}: no vm_bench; build it with ../shared/peers/libfive/build.sh")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            path, half = model_path(name, Path(scratch)), HALF.get(name, 1.0)
            for size in (int(n) for n in args.sizes.split(",")):
                probe = libfive_windows(args.libfive, path, size, half, 0, 0, 3)[0][2]
                repeats = max(3, round(args.window / probe))
                workers = [Worker(path, size, half, core) for core in (0, 1)]
                pairs = []
                for ours_core in (1, 0):  # then swapped
                    worker = workers[ours_core]
                    worker.send(str(args.seconds / 2))
                    windows = libfive_windows(
                        args.libfive, path, size, half, 1 - ours_core, args.seconds / 2, repeats
                    )
                    here = paired(windows, worker.spans())
                    for theirs, ours in here:
                        print(
                            f"{name} {size} (ours on core {ours_core}): libfive {theirs:.4f} s, "
                            f"ours {ours:.4f} s, {ours / theirs:.2f}",
                            flush=True,
                        )
                    pairs += here
                for worker in workers:
                    worker.close()
                results.append(
                    f"{name} {size}³ ({repeats} libfive renders a window): " + summary(pairs)
                )
                print(results[-1], flush=True)
    print()
    print("\n".join(results))


if __name__ == "__main__":
    main()
