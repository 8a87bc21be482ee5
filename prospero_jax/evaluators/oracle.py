"""The oracle: a float64 NumPy interpreter of `.vm` programs, with liveness GC.

Input: a Program and coordinates (any broadcastable shapes).
Output: the program's float64 value at every point.

This is the Prospero challenge's reference algorithm (evaluate every instruction on the
whole grid, in order), with each value deleted after its last use, so at most
``max_live`` arrays exist at once (about 1.1 GB for prospero at 1024²). It evaluates the
tape exactly as written (no passes), always in float64, and is what every other
evaluator is tested against. Use it for correctness, not speed. Its images are in
:mod:`prospero_jax.renderers.reference` (``pj.reference``).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float64

from prospero_jax.evaluators.unroll import plan, run
from prospero_jax.ir.program import Program


def evaluate(
    program: Program,
    x: Float64[np.ndarray, "..."] | float,
    y: Float64[np.ndarray, "..."] | float,
    z: Float64[np.ndarray, "..."] | float = 0.0,
) -> Float64[np.ndarray, "..."]:
    """The program's float64 value at points ``(x, y, z)`` (any broadcastable shapes)."""
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    with np.errstate(all="ignore"):
        value = run(plan(program), np, x, y, z, lambda _, c: np.float64(c))
    return np.broadcast_to(value, np.broadcast_shapes(x.shape, y.shape, z.shape)).copy()
