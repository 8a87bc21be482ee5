"""Heightmap normals: the dual interpreter against the unrolled dual closure (a compiled tier).

    python experiments/normals_tiers.py colonnade   # or bear

Renders the model's 512² heightmap, then times value + gradient (forward mode, three
directions, as :func:`prospero_jax.renderers.gradients.gradients_at` does) at 16,384 of its
surface points with each derivative mode: the first call (trace, compile, run) and the
median of 5 steady calls, scaled to the whole surface.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import prospero_jax as pj

MODELS = Path(__file__).resolve().parent.parent.parent / "shared" / "models"
POINTS = 1 << 14


def kernel(field: Any) -> Any:
    @jax.jit
    def run(x: jax.Array, y: jax.Array, z: jax.Array) -> Any:
        def along(direction: jax.Array) -> Any:
            return jax.jvp(field, (x, y, z), tuple(jnp.full_like(x, d) for d in direction))

        return jax.vmap(along, out_axes=(None, 0))(jnp.eye(3, dtype=x.dtype))

    return run


def main() -> None:
    name = sys.argv[1]
    program = pj.load(MODELS / f"{name}.vm")
    depth = pj.render_heightmap(program, 512, normals=False).z
    rows, cols = np.nonzero(np.isfinite(depth))
    xs, ys = pj.View(512).axes()
    points = (xs[cols], ys[rows], depth[rows, cols])
    x, y, z = (jnp.asarray(np.resize(a, POINTS), jnp.float32) for a in points)
    print(f"{name}: {len(rows):,} surface pixels, {len(pj.simplify(program))} rows")
    for mode in ("interpreter", "unrolled"):
        run = kernel(pj.to_function(program, derivatives=mode))
        start = time.perf_counter()
        jax.block_until_ready(run(x, y, z))
        first = time.perf_counter() - start
        times = []
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready(run(x, y, z))
            times.append(time.perf_counter() - start)
        steady = statistics.median(times)
        whole = steady * len(rows) / POINTS
        print(
            f"  {mode}: first call {first:.2f} s, steady {steady * 1e3:.1f} ms a chunk, "
            f"{whole:.2f} s the surface"
        )


if __name__ == "__main__":
    main()
