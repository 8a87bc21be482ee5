"""Prune-call buffer shapes, alternated in one process: what zeroing smaller buffers saves.

    python experiments/call_shapes.py --sizes 1024,4096 --rounds 15

Each prune or leaf call zeroes its register file and its outputs, sized by the call's
shape, not its rows. This renders prospero (culled, float32, the kernels) with the shapes
of today's tree and with older or other choices, patched into
:mod:`prospero_jax.renderers.hierarchy` in turn, one frame each a round:

* ``today``: prune calls that fit take the small shape (``SMALL_ROW_CAPACITY`` entries),
  register files in steps of 4 (1024, 4096, ...);
* ``large calls``: every prune call the large shape (``ROW_CAPACITY`` entries), as before;
* ``steps of 8``: register files 1024, 8192, ... (as before);
* ``before``: both (the tree before session 9).

Prints the median frame [min–max] of each, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import prospero_jax as pj
from prospero_jax.evaluators.tape import bucket
from prospero_jax.renderers import hierarchy, kernel_calls
from prospero_jax.renderers.culled import render_culled

PROGRAM = Path(__file__).resolve().parent.parent.parent / "shared" / "prospero.vm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", type=Path, default=PROGRAM)
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    program = pj.specialise(pj.load(args.program))
    today = (hierarchy.SMALL_ROW_CAPACITY, hierarchy.register_capacity)

    def eights(longest: int) -> int:
        return bucket(longest, 1024, growth=8)

    shapes = {
        "today": today,
        "large calls": (hierarchy.ROW_CAPACITY, today[1]),
        "steps of 8": (today[0], eights),
        "before": (hierarchy.ROW_CAPACITY, eights),
    }
    for size in (int(s) for s in args.sizes.split(",")):
        times: dict[str, list[float]] = {name: [] for name in shapes}
        for warm in (True, False):
            for _ in range(1 if warm else args.rounds):
                for name, (small, registers) in shapes.items():
                    hierarchy.SMALL_ROW_CAPACITY, hierarchy.register_capacity = small, registers
                    kernel_calls.register_capacity = registers  # the leaf calls'
                    started = time.perf_counter()
                    render_culled(program, pj.View(size), pj.Target(tier="kernels"))
                    if not warm:
                        times[name].append(time.perf_counter() - started)
        hierarchy.SMALL_ROW_CAPACITY, hierarchy.register_capacity = today
        kernel_calls.register_capacity = today[1]
        for name, values in times.items():
            ms = [1e3 * v for v in values]
            print(f"{size}² {name}: {statistics.median(ms):.2f} ms [{min(ms):.2f}–{max(ms):.2f}]")


if __name__ == "__main__":
    main()
