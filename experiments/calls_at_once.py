"""Kernel calls run a thread each on a CPU's cores, against one at a time, in one process.

    python experiments/calls_at_once.py --model bear --size 1024 --rounds 8

The model's heightmap with normals (``D = N``, float32, the default mode; regions as in
libfive_heightmaps.py), rendered alternately with batches of interpreter calls run at
once (:func:`prospero_jax.runtime.executables.at_once`: the cores this process may run
on) and one at a time (``at_once`` forced to 1, as before session 28), the order swapped
every round, each render after a warm one of the same kind: the median, min and max of
each, and the median of the rounds' ratios. Run it on both cores (it says how many it
has); under ``taskset -c 0`` both sides are the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import prospero_jax as pj
from prospero_jax.runtime import executables

sys.path.insert(0, str(Path(__file__).resolve().parent))
from libfive_peer import HALF, model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bear")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    pj.reuse_freed_memory()  # as the CLI does
    with tempfile.TemporaryDirectory() as scratch:  # where the sphere is written
        program = pj.load(model_path(args.model, Path(scratch)))
    half = HALF.get(args.model, 1.0)
    cores = executables.at_once(pj.Target().device)
    if cores < 2:
        sys.exit(f"{cores} core: run it where the process may use two or more")
    at_once = executables.at_once

    def frame(threads: int) -> float:
        executables.at_once = lambda device: min(threads, at_once(device))  # type: ignore[assignment]
        try:
            region = (-half, half, -half, half)
            pj.render_heightmap(program, args.size, region=region)  # warm: this kind's buffers
            started = time.perf_counter()
            pj.render_heightmap(program, args.size, region=region)
            return time.perf_counter() - started
        finally:
            executables.at_once = at_once  # type: ignore[assignment]

    times: dict[int, list[float]] = {1: [], cores: []}
    for round_ in range(args.rounds):
        for threads in (1, cores) if round_ % 2 == 0 else (cores, 1):
            times[threads].append(frame(threads))
    print(f"{args.model} {args.size}³ with normals, {cores} cores (pid {os.getpid()}), "
          f"{args.rounds} rounds")  # fmt: skip
    for threads, seconds in times.items():
        how = "one at a time" if threads == 1 else f"{threads} at once"
        spread = f"[{min(seconds):.3f}–{max(seconds):.3f}]"
        print(f"  calls {how}: median {statistics.median(seconds):.3f} s {spread}")
    ratios = [b / a for a, b in zip(times[1], times[cores], strict=True)]
    print(f"  at once ÷ one at a time, rounds' median: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
