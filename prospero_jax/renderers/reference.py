"""The oracle's images (``pj.reference``): the float64 NumPy interpreter on the pixel grid.

Input: a Program, an image size, a region and a z plane.
Output: float64 values at every pixel (:func:`values`), or the challenge's uint8 image
(:func:`render`), computed by :func:`prospero_jax.evaluators.oracle.evaluate` on the grid
of :mod:`prospero_jax.renderers.view`. Every renderer is tested against these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float64, UInt8

from prospero_jax.evaluators.oracle import evaluate
from prospero_jax.ir.program import Program
from prospero_jax.renderers.view import DEFAULT_REGION, axes, to_pixels

__all__ = ["DEFAULT_REGION", "axes", "evaluate", "render", "to_pixels", "values"]


def values(
    program: Program,
    size: int,
    region: Sequence[float] = DEFAULT_REGION,
    z: float = 0.0,
) -> Float64[np.ndarray, "size size"]:
    """The program's float64 value at every pixel of a ``size × size`` image."""
    xs, ys = axes(size, region)
    return evaluate(program, xs[None, :], ys[:, None], z)


# The same parameters as values(): render is its image.
def render(
    program: Program,
    size: int,
    region: Sequence[float] = DEFAULT_REGION,
    z: float = 0.0,
) -> UInt8[np.ndarray, "size size"]:
    """The challenge's image: 255 where the float64 value is < 0, else 0 (NaN gives 0)."""
    return to_pixels(values(program, size, region, z))
