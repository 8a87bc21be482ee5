"""The oracle: a float64 NumPy interpreter of `.vm` programs, with liveness GC.

Input: a Program and coordinates (or an image size).
Output: float64 values, or the challenge's uint8 image.

This is the Prospero challenge's reference algorithm (evaluate every instruction on the
whole grid, in order), with each value deleted after its last use, so at most
``max_live`` arrays exist at once (about 1.1 GB for prospero at 1024²). It evaluates the
tape exactly as written (no passes), always in float64, and is what every other
evaluator is tested against. Use it for correctness, not speed.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float64, UInt8

from prospero_jax.evaluators.unroll import plan, run
from prospero_jax.ir.program import Program

#: The challenge's square: (xmin, xmax, ymin, ymax).
DEFAULT_REGION: tuple[float, float, float, float] = (-1.0, 1.0, -1.0, 1.0)
#: Largest image side: a 2**18-px square is a 64 GiB PGM and hours of CPU time; beyond
#: it, files outgrow common size limits and renders take days.
MAX_SIZE = 1 << 18
#: Largest coordinate magnitude a region may reach: float32 holds it, and its pixel steps.
REGION_LIMIT = 1e30


def check_size(size: int) -> int:
    """``size`` if it is an image side from 1 to :data:`MAX_SIZE`, else :class:`ValueError`."""
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(
            f"image size must be from 1 to {MAX_SIZE} px a side (a {MAX_SIZE}² image is a "
            f"{MAX_SIZE**2 / 2**30:.0f} GiB file), got {size}"
        )
    return size


def check_z(z: float) -> float:
    """``z`` if it is a finite number of magnitude at most :data:`REGION_LIMIT`."""
    if not abs(z) <= REGION_LIMIT:  # NaN fails this too
        raise ValueError(f"z must be finite, at most {REGION_LIMIT:g} in magnitude: got {z}")
    return float(z)


def check_region(region: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``region`` as four floats ``(xmin, xmax, ymin, ymax)``, or :class:`ValueError`.

    The one rule every renderer follows (it is checked by :func:`axes`): four finite
    numbers of magnitude at most :data:`REGION_LIMIT`, with ``xmin < xmax`` and ``ymin <
    ymax``. Mirror images are not drawn by inverting a region: flip the image instead.
    """
    try:
        xmin, xmax, ymin, ymax = (float(v) for v in region)
    except (TypeError, ValueError):
        raise ValueError(
            f"region must be four numbers (xmin, xmax, ymin, ymax), got {region!r}"
        ) from None
    bounds = (xmin, xmax, ymin, ymax)
    shown = ", ".join(f"{v:g}" for v in bounds)
    if not all(abs(v) <= REGION_LIMIT for v in bounds):  # NaN and ±inf fail this too
        raise ValueError(f"region bounds must be finite, at most {REGION_LIMIT:g} in magnitude: "
                         f"got ({shown})")  # fmt: skip
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"region must have xmin < xmax and ymin < ymax: got ({shown})")
    return bounds


def axes(
    size: int, region: tuple[float, float, float, float] = DEFAULT_REGION
) -> tuple[Float64[np.ndarray, " size"], Float64[np.ndarray, " size"]]:
    """Pixel-centre coordinates: ``xs`` left to right, ``ys`` top to bottom.

    For the default region this is the challenge's ``s = linspace(-1, 1, N)``,
    ``x, y = meshgrid(s, -s)``: ``xs == s`` and ``ys == -s``, bit for bit.
    """
    check_size(size)
    xmin, xmax, ymin, ymax = check_region(region)
    return np.linspace(xmin, xmax, size), np.linspace(ymax, ymin, size)


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


def values(
    program: Program,
    size: int,
    region: tuple[float, float, float, float] = DEFAULT_REGION,
    z: float = 0.0,
) -> Float64[np.ndarray, "size size"]:
    """The program's float64 value at every pixel of a ``size × size`` image."""
    xs, ys = axes(size, region)
    return evaluate(program, xs[None, :], ys[:, None], z)


def render(
    program: Program,
    size: int,
    region: tuple[float, float, float, float] = DEFAULT_REGION,
    z: float = 0.0,
) -> UInt8[np.ndarray, "size size"]:
    """The challenge's image: 255 where the float64 value is < 0, else 0 (NaN gives 0)."""
    return to_pixels(values(program, size, region, z))


def to_pixels(value: np.ndarray) -> UInt8[np.ndarray, "..."]:
    """255 where ``value < 0``, else 0."""
    return np.where(value < 0, np.uint8(255), np.uint8(0))
