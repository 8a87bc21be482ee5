"""Where a culled frame's time goes, and whether bands on two threads help (issue 14).

``--profile``: ``cProfile`` over warm renders of prospero; prints the functions with the
most own time (kernel waits show as ``numpy.asarray``, transfers as ``device_put``).
``--bands``: one culled render against the same image as 2 and 4 bands of rows rendered
on a two-thread pool (each band its own hierarchy), medians of ``--repeats`` warm frames,
alternated in one process; the images are checked equal.

    python experiments/culled_frame.py --profile --size 1024
    python experiments/culled_frame.py --bands --size 1024 --size 4096
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import prospero_jax as pj
from prospero_jax.renderers.culled import render_culled

PROGRAM = Path(__file__).resolve().parent.parent.parent / "shared" / "prospero.vm"


def median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, action="append")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--bands", action="store_true")
    args = parser.parse_args()
    program = pj.load(PROGRAM)
    target = pj.Target()
    pool = ThreadPoolExecutor(2)
    for size in args.size or [1024]:
        view = pj.View(size)
        whole = pj.render(program, view)  # compiles
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(10):
                pj.render(program, view)
            profile.disable()
            print(f"{size}²: 10 frames")
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
        if args.bands:

            def banded(count: int, view: pj.View = view) -> np.ndarray:
                step = view.size // count
                parts = [view.band(i * step, (i + 1) * step) for i in range(count)]
                return np.concatenate(
                    list(pool.map(lambda v: render_culled(program, v, target), parts))
                )

            ways = {"one call": lambda view=view: pj.render(program, view)}
            ways |= {f"{n} bands, 2 threads": lambda n=n: banded(n) for n in (2, 4)}
            for name, run in ways.items():
                assert np.array_equal(run(), whole), name
            for _ in range(2):  # alternated
                for name, run in ways.items():
                    print(f"{size}² {name}: {median_ms(run, args.repeats):.1f} ms")


if __name__ == "__main__":
    main()
