"""A heightmap's normals: ∇f/|∇f| at its surface pixels, in the view's frame.

Input: a Program (the original, never its sign program: values and derivatives always come
from it), a view's turn (or None), the view, the heightmap's ``z`` (NaN where empty) and a
:class:`~prospero_jax.renderers.view.Target`.
Output: :func:`surface_normals`, ``(N, N, 3)`` in the target's dtype: the unit gradient at each
surface pixel's ``(x, y, z)`` (turned back into the view's frame), NaN where the column is
empty or no direction is known.

How: on pruned tapes (:func:`~prospero_jax.renderers.gradients.prunes_gradients`: on CPU,
programs of 64 rows or more), the image's tiles of :data:`NORMAL_TILE`² pixels, each
tile's tape pruned over its surface points' hull
(:func:`~prospero_jax.renderers.gradients.group_tapes`) and run by the dual kernel
(:func:`~prospero_jax.renderers.hierarchy.tile_duals`), tiles whose tapes are one plane
sharing one evaluation; else the compiled field at the surface pixels
(:func:`~prospero_jax.renderers.gradients.unit_chunks`).

Invariant: a pruned tape gives the original program's value and gradient at every point
of its tile's hull (intervals prune for the value, never for a sign), so the normals are
the same, up to rounding, whichever path computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from prospero_jax.evaluators.tape import Tapes, run_rows
from prospero_jax.ir.program import Program
from prospero_jax.renderers.gradients import (
    CONSTANT_ROWS,
    GROUP,
    constant_gradients,
    group_tapes,
    hulls_of,
    prunes_gradients,
    unit_chunks,
)
from prospero_jax.renderers.hierarchy import dual_call_groups, tile_duals
from prospero_jax.renderers.tile_grid import paint_tiles
from prospero_jax.renderers.view import Rotation, Target, View

#: The side of the pixel tiles whose surface points share a pruned tape for normals.
NORMAL_TILE = math.isqrt(GROUP)


def surface_normals(
    program: Program,
    turn: Rotation | np.ndarray | None,
    view: View,
    z: np.ndarray,
    target: Target,
) -> np.ndarray:
    """∇f/|∇f| at each surface pixel of ``view`` (NaN where empty or where the gradient is
    0), in the view's frame: for a view turned by ``turn``, the gradient of ``program`` at
    ``turn @ p`` turned back (``turnᵀ ∇f``), so every view of a program reuses what its
    gradients compiled (a posed program is a new program: gradients_at compiled it anew
    for each view the viewer drew, ~0.3 s of a tanglecube view).

    On pruned tapes (:func:`~prospero_jax.renderers.gradients.prunes_gradients`) the
    points are the image's tiles of :data:`NORMAL_TILE`² pixels that hold surface pixels,
    a group each (a tile's empty pixels padded with one of its surface points), read and
    written back by reshaping (no sort, no gather: colonnade's 1024² normals ~115 → 85 ms,
    experiments/RESULTS.md); else the surface pixels, through the compiled field (tiles
    there cost more than they save: sphere 17 → 23 ms)."""
    rotation = None if turn is None else np.array(turn)
    back = None if rotation is None else rotation.T  # the program's frame to the view's
    size, t = z.shape[0], NORMAL_TILE
    if prunes_gradients(program, target):
        side = -(-size // t) * t
        across = side // t
        # In float64 only if turned (then into the program's frame), else in the target's
        # dtype from the start (z holds depths in it): half the bytes to move.
        dtype = np.float64 if turn is not None else target.dtype
        tiles = _tiled(
            z if side == size else np.pad(z, (0, side - size), constant_values=np.nan), dtype
        )
        found = ~np.isnan(tiles)
        kept = found.any(axis=1)
        keep = np.flatnonzero(kept)
        if not len(keep):  # no surface: nothing to evaluate
            return np.full((size, size, 3), np.nan, target.dtype)
        keep = keep[_z_order(*np.divmod(keep, across))]
        tiles, found = tiles[keep], found[keep]
        # A tile's empty pixels take one of its surface points' z (their x and y are the
        # tile's): the group's hull is its surface points'.
        top, bottom = np.fmax.reduce(tiles, axis=1), np.fmin.reduce(tiles, axis=1)
        np.copyto(tiles, top[:, None], where=~found)
        xs, ys = (np.pad(a, (0, side - size), mode="edge").reshape(across, t) for a in view.axes())
        rows, cols = np.divmod(keep, across)

        def points_of(index: np.ndarray) -> np.ndarray:  # (tiles, [x, y, z], t²), in dtype
            points = np.empty((len(index), 3, t, t), dtype)
            points[:, 0] = xs[cols[index]][:, None, :]
            points[:, 1] = ys[rows[index]][:, :, None]
            points[:, 2] = tiles[index].reshape(-1, t, t)
            return points.reshape(-1, 3, t * t)

        grouped: Callable[[np.ndarray], np.ndarray] = points_of
        if rotation is None:  # the tiles' hulls from their axes and depths; a tile's
            # points built only if it is evaluated (not a plane's copy: colonnade 1024²,
            # 747 tiles of 3,306)
            # Each column and row of tiles' bounds, then each tile's (a pass over its
            # points per bound cost colonnade's 1024² normals ~2 ms); z's from above.
            bounds = [
                f(a.astype(dtype), axis=1)[at]
                for a, at in ((xs, cols), (ys, rows))
                for f in (np.min, np.max)
            ]
            hulls = np.stack([*bounds, bottom, top], 1)
        else:  # the points turned into the program's frame, and their hulls
            turned = (rotation @ points_of(np.arange(len(keep)))).astype(target.dtype)
            hulls = hulls_of(turned)
            grouped = lambda index: turned[index]  # noqa: E731
        turn_back = None if back is None else back.astype(target.dtype)
        # No point is farther from the origin than the view's corners (turned or not).
        reach = float(np.hypot.reduce([np.abs(a).max() for a in (xs, ys, view.zs())]))
        shared = _tile_normals(program, hulls, grouped, found, target, turn_back, reach)
        # Written as tiles of an image whose pixels are their three numbers, a tile's row
        # of pixels one run of memory (paint_tiles): the evaluated tiles whole, a plane's
        # tiles its one vector (a row of it, repeated), the others NaN (one pass over the
        # image, not two; colonnade 1024² ~4 → 2.5 ms), then a plane's tiles' empty
        # pixels NaN.
        normal = np.empty((side, side, 3), target.dtype)
        image, nan = _pixels(normal), _pixels(np.full(3, np.nan, target.dtype))
        done = shared.evaluated
        unit = _pixels(np.ascontiguousarray(shared.unit, target.dtype)).reshape(-1, t, t)
        paint_tiles(image, t, rows[done] * t, cols[done] * t, unit)
        plane = shared.copies
        vector = _pixels(np.ascontiguousarray(shared.vector, target.dtype))
        line = np.repeat(vector, t).reshape(-1, 1, t)  # a tile's row of its vector
        paint_tiles(image, t, rows[plane] * t, cols[plane] * t, line)
        empty = np.divmod(np.flatnonzero(~kept), across)
        paint_tiles(image, t, empty[0] * t, empty[1] * t, nan)
        gaps = plane[~found[plane].all(axis=1)]  # few: a plane's tiles are mostly whole
        tile, pixel = np.nonzero(~found[gaps])
        y, x = np.divmod(pixel, t)
        image[rows[gaps[tile]] * t + y, cols[gaps[tile]] * t + x] = nan
        return normal if side == size else normal[:size, :size].copy()
    normal = np.full((*z.shape, 3), np.nan, target.dtype)
    surface = np.isfinite(z)
    count = int(np.count_nonzero(surface))
    if count:
        # Read and written through the mask, row-major as the kernel's points go: x and y
        # from the axes broadcast over the image, each component a view of the image (no
        # flat indices: their divmod, gathers and scatters cost the sphere's 512² normals
        # 1.85 ms, the mask's passes 0.86; experiments/RESULTS.md).
        xs, ys = view.axes()
        d = target.dtype if rotation is None else np.float64  # turned: in float64
        x = np.broadcast_to(xs.astype(d), z.shape)[surface]
        y = np.broadcast_to(ys.astype(d)[:, None], z.shape)[surface]
        w = z[surface]
        if rotation is not None:  # into the program's frame
            x, y, w = rotation @ np.stack([x, y, w])
        unit = np.empty((3, count), target.dtype)
        for part, chunk in unit_chunks(program, x, y, w, target, back):
            unit[:, part] = chunk  # a component a row (unit_chunks)
        for k in range(3):
            normal[..., k][surface] = unit[k]
    return normal


class _TileNormals(NamedTuple):
    """Unit normals of tiles: ``unit[i]`` (``(n, 3)``) tile ``evaluated[i]``'s at each of
    its points (NaN where it has no surface point); tile ``copies[j]``, one a plane's
    tape, has ``vector[j]`` (``(3,)``) at each of its surface points."""

    evaluated: np.ndarray
    unit: np.ndarray
    copies: np.ndarray
    vector: np.ndarray


def _tile_normals(
    program: Program,
    hulls: np.ndarray,
    points: Callable[[np.ndarray], np.ndarray],
    found: np.ndarray,
    target: Target,
    turn: np.ndarray | None,
    reach: float,
) -> _TileNormals:
    """The unit normals of each tile's points (tiles ``index``'s are ``points(index)``,
    ``(tiles, 3, n)`` in the target's dtype, their hulls ``hulls`` (``(tiles, 6)``); no
    coordinate beyond ``reach``, but for rounding) where ``found`` (``(tiles, n)``),
    turned by ``turn``; NaN elsewhere.

    Each tile's tape is pruned over its points (:func:`~prospero_jax.renderers.gradients.
    group_tapes`). Tiles whose tapes are one tape with the same gradient at every point
    (:func:`~prospero_jax.renderers.gradients.constant_gradients`: a plane) share one
    evaluation, the first of them evaluated and the others given its vector (not
    written out per pixel: the image's tiles are painted with it), when there are more
    tiles than one call of the dual kernel holds: what sharing saves is mostly calls
    (~1 ms each, whatever they hold), and below that looking for planes cost more than
    it saved (colonnade 512², 1,024 tiles: normals 12.5 → 15.7 ms). At 1024², 2,559 of
    the colonnade's 3,306 tiles share (its floors and walls): frame ~130 → ~122 ms
    (experiments/RESULTS.md)."""
    tapes, lengths = group_tapes(program, hulls, target)
    source = np.arange(len(lengths))
    if len(lengths) > dual_call_groups(found.shape[1]):  # sharing can save calls
        source = _alike(
            tapes, lengths, lambda t, n: constant_gradients(t, n, np.full(len(n), reach))
        )
    evaluated = np.flatnonzero(source == np.arange(len(source)))

    copies = np.flatnonzero(source != np.arange(len(source)))
    if not len(copies):  # nothing shared
        tapes_evaluated, sizes = tapes, lengths
    else:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sizes = lengths[evaluated]
        tapes_evaluated = tapes.take(run_rows(starts[evaluated], sizes))
    with target.precision():  # float64 targets' kernels trace in float64
        at = points(evaluated)
        unit: np.ndarray = tile_duals(tapes_evaluated, sizes, at, target, found[evaluated], turn)
    # A copy's vector: its tape's one, read at a surface pixel of the tile evaluated.
    origin = np.searchsorted(evaluated, source[copies])
    vector = unit[origin, found[source[copies]].argmax(axis=1)]
    return _TileNormals(evaluated, unit, copies, vector)


def _alike(
    tapes: Tapes, lengths: np.ndarray, shareable: Callable[[Tapes, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Per tape (``lengths`` rows each, in order), the first tape with the same rows, bit
    for bit, if ``shareable`` says so of those rows (asked once per distinct tape of up to
    :data:`~prospero_jax.renderers.gradients.CONSTANT_ROWS` rows); else itself."""
    source = np.arange(len(lengths))
    which = np.flatnonzero((lengths > 0) & (lengths <= CONSTANT_ROWS))
    if len(which) < 2:
        return source
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[which]
    width = int(lengths[which].max())
    live = np.arange(width) < lengths[which, None]
    at = np.where(live, starts[:, None] + np.arange(width), 0)
    bits = tapes.consts[at].view(f"i{tapes.consts.itemsize}")  # a number's bits
    columns = [tapes.ops[at], tapes.args[at, 0], tapes.args[at, 1], bits]
    key = np.concatenate([np.where(live, c.astype(np.int64), -1) for c in columns], axis=1)
    # Tapes sorted by a hash of their rows, then compared whole: equal hashes of unequal
    # tapes only cost sharing, never a wrong answer.
    odd = np.random.default_rng(0).integers(1, 2**62, key.shape[1]) | 1
    digest = (key.astype(np.uint64) * odd.astype(np.uint64)).sum(axis=1, dtype=np.uint64)
    _, first, alike = np.unique(digest, return_index=True, return_inverse=True)
    alike = first[alike.reshape(-1)]  # per tape, the first with its hash
    same = (key == key[alike]).all(axis=1)
    heads = np.unique(alike[same])  # one tape of each kind, asked once
    sizes = lengths[which][heads]
    ok = np.zeros(len(which), bool)
    ok[heads] = shareable(tapes.take(run_rows(starts[heads], sizes)), sizes)
    shared = same & ok[alike]
    source[which[shared]] = which[alike[shared]]
    return source


def _z_order(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The order of the tiles at ``rows``, ``cols`` along the Z curve (their bits
    interleaved): consecutive tiles are square blocks, 4 × 4, then 16 × 16 where all are
    kept, so the groups :func:`~prospero_jax.renderers.gradients.group_tapes` prunes over
    are compact (row-major runs of 16 tiles were strips: colonnade 1024²'s middle tapes
    129 → 65 rows a box, its tiles' tapes 11.1 → 7.6 ms, the same tapes)."""
    code = np.zeros(len(rows), np.int64)
    for bit in range(int(max(rows.max(), cols.max())).bit_length()):
        code |= ((rows >> bit) & 1) << (2 * bit + 1) | ((cols >> bit) & 1) << (2 * bit)
    return np.argsort(code, kind="stable")


def _pixels(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (``(..., 3)``, C-contiguous) as an array of them, each vector's three
    numbers one element (a void), written through: indexed assignment then moves a
    vector at a time, not a number at a time (the sphere's 512² normals scattered in 0.64
    → 0.32 ms)."""
    pixels: np.ndarray = vectors.view(np.dtype((np.void, 3 * vectors.itemsize)))[..., 0]
    return pixels


def _tiled(image: np.ndarray, dtype: DTypeLike) -> np.ndarray:
    """``image`` (a multiple of :data:`NORMAL_TILE` a side) as its tiles, row-major, each
    tile's pixels row-major: ``(tiles, NORMAL_TILE²)``, in ``dtype`` (converted as it is
    moved: colonnade 1024², 1.7 → 0.5 ms)."""
    t = NORMAL_TILE
    across = image.shape[0] // t
    tiles = np.empty((across, across, t, t), dtype)
    np.copyto(tiles, image.reshape(across, t, across, t).swapaxes(1, 2))
    return tiles.reshape(-1, t * t)
