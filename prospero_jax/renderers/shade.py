"""Gradient products: Program → value and gradient images, and shaded renders.

Input: a Program, what to draw and where to run (as :func:`prospero_jax.render` takes them).
Output: :class:`FieldSamples` (value, gradient, normal, |∇f| and the distance estimate
f/|∇f| at the pixels evaluated), and from them 8-bit images: anti-aliased coverage
(greyscale), or normals or gradients as colour (RGB).

Gradients are evaluated only where they are needed: the image is first rendered as the
challenge's binary picture (culled on CPU), then value and gradient are computed by
forward-mode JAX (three tangent directions at once, through the field's custom
derivatives, so long tapes run in the dual interpreter, which compiles in about a second;
:func:`~prospero_jax.renderers.gradients.gradients_at`) at the pixels within ``band``
pixels of the outline, i.e. those with a neighbour of the other sign, grown by
``band - 1``; ``band=None`` evaluates every pixel.

Invariants: pixels outside the band keep the binary render's value (0 or 255 coverage;
white inside and black outside in colour), so an anti-aliased image differs from the
binary one only next to the outline; values and gradients of evaluated pixels are those
of :func:`prospero_jax.to_function` at the pixel centres.
"""

from __future__ import annotations

from typing import NamedTuple, Unpack

import numpy as np
from jaxtyping import Bool, Float, UInt8

from prospero_jax.ir.program import Program
from prospero_jax.renderers.gradients import gradients_at
from prospero_jax.renderers.render import render
from prospero_jax.renderers.view import Progress, Shorthand, View, resolve

GRADIENT_SHADES = ("antialias", "normals", "gradient")


class FieldSamples(NamedTuple):
    """Value and gradient at the pixels of an image (NaN where not evaluated)."""

    value: Float[np.ndarray, "n n"]
    gradient: Float[np.ndarray, "n n 3"]  # (∂f/∂x, ∂f/∂y, ∂f/∂z)
    evaluated: Bool[np.ndarray, "n n"]
    inside: Bool[np.ndarray, "n n"]  # the binary render: value < 0
    pixel: float  # the distance between pixel centres, in field units

    @property
    def magnitude(self) -> Float[np.ndarray, "n n"]:
        """|∇f|."""
        return np.asarray(np.linalg.norm(self.gradient, axis=-1))

    @property
    def normal(self) -> Float[np.ndarray, "n n 3"]:
        """∇f / |∇f| (NaN where |∇f| is 0 or not evaluated)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(self.gradient / self.magnitude[..., None])

    @property
    def distance(self) -> Float[np.ndarray, "n n"]:
        """f / |∇f|: the first-order estimate of the signed distance to the outline."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(self.value / self.magnitude)


def outline_band(inside: Bool[np.ndarray, "n n"], band: int) -> Bool[np.ndarray, "n n"]:
    """Pixels with an 8-neighbour on the other side of the outline, grown by ``band - 1``."""
    near = np.zeros_like(inside)
    padded = np.pad(inside, 1, mode="edge")
    h, w = inside.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] != inside
    for _ in range(band - 1):
        padded = np.pad(near, 1)
        grown = near.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        near = grown
    return near


def sample_gradient(
    program: Program,
    size: int | View = 1024,
    *,
    band: int | None = 1,
    progress: Progress | None = None,
    **options: Unpack[Shorthand],
) -> FieldSamples:
    """Value and gradient at the pixels within ``band`` of the outline (every pixel if None).

    What to draw and where to run are :func:`prospero_jax.render`'s (one device; no band
    of rows). ``progress(done, total)`` counts chunks of points.
    """
    if band is not None and band < 1:
        raise ValueError(f"band must be at least 1 pixel (or None for every pixel), got {band}")
    view, where = resolve(size, options)
    if view.rows is not None or where.devices:
        raise ValueError("gradients are sampled over the whole image, on one device")
    program, view = view.pose(program)  # gradients in the view's frame
    inside = render(program, view, target=where) > 0
    where_band = np.ones_like(inside) if band is None else outline_band(inside, band)
    xs, ys = view.axes()
    rows, cols = np.nonzero(where_band)
    value = np.full(inside.shape, np.nan, where.dtype)
    gradient = np.full((*inside.shape, 3), np.nan, where.dtype)
    points = (xs[cols], ys[rows], np.full(len(rows), view.z))
    value[rows, cols], gradient[rows, cols] = gradients_at(program, *points, where, progress)
    return FieldSamples(value, gradient, where_band, inside, view.pixel)


def shade(samples: FieldSamples, kind: str) -> UInt8[np.ndarray, "..."]:
    """An 8-bit image of ``samples``: ``(n, n)`` coverage, or ``(n, n, 3)`` RGB colour.

    * ``antialias``: coverage ``clip(0.5 - d / pixel, 0, 1)`` with ``d = f / |∇f|`` in the
      evaluated band (a pixel is a unit square, the outline locally a straight line);
      elsewhere the binary render's 0 or 255.
    * ``normals``: ``(1 + n) / 2`` as RGB, ``n = ∇f / |∇f|`` (``n_z = 0`` for flat
      programs: blue is 128).
    * ``gradient``: hue from the gradient's direction in the x-y plane, brightness from
      |∇f| (1 at twice the median over the band).

    In colour, pixels not evaluated are white inside and black outside.
    """
    inside, where = samples.inside, samples.evaluated
    if kind == "antialias":
        with np.errstate(invalid="ignore"):
            coverage = np.clip(0.5 - samples.distance / samples.pixel, 0.0, 1.0)
        # Where |∇f| is 0 or the value is NaN the estimate is useless: keep the binary pixel.
        coverage = np.where(np.isfinite(coverage), coverage, inside)
        coverage = np.where(where, coverage, inside)
        return np.round(coverage * 255).astype(np.uint8)
    if kind == "normals":
        colour = 0.5 * (1 + np.nan_to_num(samples.normal))
    elif kind == "gradient":
        g = np.nan_to_num(samples.gradient)
        magnitude = np.hypot(g[..., 0], g[..., 1])
        scale = 2 * np.median(magnitude[where]) if where.any() else 1.0
        hue = (np.arctan2(g[..., 1], g[..., 0]) / (2 * np.pi)) % 1.0
        colour = _hsv_to_rgb(hue, np.ones_like(hue), np.clip(magnitude / (scale or 1.0), 0, 1))
    else:
        raise ValueError(f"shade must be one of {', '.join(GRADIENT_SHADES)}, got {kind!r}")
    background = np.where(inside, 1.0, 0.0)[..., None]
    rgb = np.where(where[..., None], colour, background)
    return np.round(rgb * 255).astype(np.uint8)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue, saturation, value in [0, 1] → RGB in [0, 1] (the standard hexcone model)."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack(
        [
            np.stack(c, axis=-1)
            for c in [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
        ]
    )
    return np.asarray(np.take_along_axis(table, i[None, ..., None], axis=0)[0])
