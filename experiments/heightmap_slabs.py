"""Culled heightmaps: leaf tile side and slab thickness, timed (results must not change).

    python experiments/heightmap_slabs.py bear 512 32,16 32,8 16,8 32,16

For each ``leaf,slab`` pair: the median and worst of 3 steady renders (no normals) after a
warm-up; every pair's depths must equal the first pair's, pixel for pixel.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

import prospero_jax as pj
from prospero_jax.renderers import heightmap

MODELS = Path(__file__).resolve().parent.parent.parent / "shared" / "models"


def main() -> None:
    name, size = sys.argv[1], int(sys.argv[2])
    program = pj.load(MODELS / f"{name}.vm")
    reference = None
    for pair in sys.argv[3:]:
        leaf, slab = (int(v) for v in pair.split(","))
        heightmap.LEAF_SIDE, heightmap.SLAB = leaf, slab  # module globals _culled reads
        z = pj.render_heightmap(program, size, normals=False).z  # warm-up: compiles
        reference = z if reference is None else reference
        np.testing.assert_array_equal(z, reference)  # NaN where empty, in both
        times = []
        for _ in range(3):
            start = time.perf_counter()
            pj.render_heightmap(program, size, normals=False)
            times.append(time.perf_counter() - start)
        median, worst = statistics.median(times), max(times)
        print(f"{name} {size}² leaf {leaf} slab {slab}: {median:.2f} s (worst {worst:.2f})")


if __name__ == "__main__":
    main()
