"""Cross-check ``prospero bench``: time the same renders independently, in a fresh process.

Reads a report written by ``prospero bench --json`` and, for each of its rows at one size
whose mode is ``unrolled``, ``chunked`` or ``culled``, times that render here with
nothing but ``time.perf_counter`` around the public (or, for ``chunked``, the tile-loop)
entry point: one warm-up render, then the median of ``--repeats``. Prints both medians and
their ratio.

    prospero bench ../shared/prospero.vm --sizes 256,1024 \
        --json experiments/results/bench_prospero_cpu.json
    python experiments/bench_check.py experiments/results/bench_prospero_cpu.json --size 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax

import prospero_jax as pj
from prospero_jax.benchmarks.strategies import tile_kernel
from prospero_jax.renderers.brute import render_tiles


def median_time(render: Callable[[], object], repeats: int) -> float:
    render()  # warm-up: compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        render()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    program = pj.load(report["program"]["source"])
    size = args.size
    chunk = report["settings"]["chunk"]
    device = jax.devices()[0]
    chunked = tile_kernel(program, "chunked", chunk=chunk).function  # compiled once
    renders: dict[str, Callable[[], object]] = {
        "unrolled": lambda: pj.render(program, size, mode="brute"),
        "chunked": lambda: render_tiles(chunked, pj.View(size), pj.Target("float32", device)),
        "culled": lambda: pj.render(program, size, mode="culled"),
    }
    print("| mode | size | bench steady median (s) | independent median (s) | ratio |")
    print("|---|---|---|---|---|")
    for row in report["results"]:
        if row["size"] != size or row["mode"] not in renders:
            continue
        mine = median_time(renders[row["mode"]], args.repeats)
        theirs = row["steady"]["median_s"]
        print(f"| {row['mode']} | {size}² | {theirs:.4f} | {mine:.4f} | {mine / theirs:.2f} |")


if __name__ == "__main__":
    main()
