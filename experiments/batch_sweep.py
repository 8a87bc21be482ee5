"""A constant sweep rendered three ways: vmapped batch, one brute render per frame, culled.

    python experiments/batch_sweep.py --frames 24 --size 256 --repeats 3

On the built-in demo model (1,013 instructions; its first constant swept over ±30 %),
each way renders every frame, timed end to end in this process, compile included (the
first call) and again warm (the median of ``--repeats`` further calls):

* ``vmap``: :func:`prospero_jax.render_batch` in brute mode: the parametric closure
  vmapped over the frames in one jitted tile kernel, compiled once;
* ``per-frame brute``: :func:`prospero_jax.render` of each ``program.with_constants(c)``
  in brute mode: the constants are literals, so every frame is a new program to compile;
* ``culled``: :func:`prospero_jax.render_batch` in culled mode: interpreter kernels that
  compile nothing per program.

Every way's frames are compared with the vmapped ones (pixels that differ are counted).
JAX's persistent cache is off, so "first" is a cold compile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

import prospero_jax as pj


def timed(run: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    frames = run()
    first = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        warm.append(time.perf_counter() - start)
    return frames, first, statistics.median(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    program = pj.shapes.demo_program()
    name = program.constant_ids[0]
    base = program.constants[0]
    table = pj.sweep_constants(program, name, base * np.linspace(0.7, 1.3, args.frames))
    n = args.size

    ways: dict[str, Callable[[], np.ndarray]] = {
        "vmap": lambda: pj.render_batch(program, table, n, mode="brute"),
        "per-frame brute": lambda: np.stack(
            [pj.render(program.with_constants(c), n, mode="brute") for c in table]
        ),
        "culled": lambda: pj.render_batch(program, table, n, mode="culled"),
    }
    rows, reference = [], None
    for way, run in ways.items():
        frames, first, warm = timed(run, args.repeats)
        reference = frames if reference is None else reference
        rows.append(
            {
                "way": way,
                "first_s": round(first, 3),
                "warm_s": round(warm, 4),
                "warm_ms_per_frame": round(warm / args.frames * 1e3, 2),
                "pixels_differing_from_vmap": int((frames != reference).sum()),
            }
        )
    report = {
        "program": f"demo ({len(program)} instructions), constant {name} swept",
        "frames": args.frames,
        "size": n,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "rows": rows,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
