"""Culling: Program → uint8 image by interval arithmetic over tiles and per-tile tape pruning.

Input: a Program, a :class:`~prospero_jax.renderers.view.View` and a
:class:`~prospero_jax.renderers.view.Target`.
Output: the same uint8 image as the brute-force renderer, bit for bit.

How (after Fidget's and MPR's hierarchical evaluation):

1. The image is padded to a power-of-two square ``P`` and the whole square is the root
   tile, carrying the simplified program's tape (constants folded into their users as
   immediates, :class:`~prospero_jax.evaluators.tape.Tapes`).
2. Each level splits every ambiguous tile k × k (4 × 4, and 2 × 2 for what is left:
   :func:`~prospero_jax.renderers.hierarchy.splits`; the levels are the octree's, z fixed:
   :func:`~prospero_jax.renderers.octree.walk` with one sample and leaf boxes one sample
   thick, the heightmaps' and meshes' hierarchy in its 2-D case).
   :func:`~prospero_jax.evaluators.cull.prune_kernel` evaluates the parent's tape on
   intervals over each child's box: a child
   whose interval is < 0 is painted inside, one whose interval is >= 0 is left outside,
   and an ambiguous one (straddling 0, or maybe NaN) gets a pruned tape: decided
   ``min``/``max`` replaced by their chosen side, ``min``/``max`` whose sign one side
   decides (when only a sign test is needed: the root's ``< 0``, passed on through
   ``min``, ``max`` and, flipped to ``> 0``, ``neg``) replaced by that side, dead rows
   dropped. Host NumPy gathers the kept rows into the next level's tapes (vectorized over
   all tiles; no Python loop per tile).
3. At 32 × 32 pixels (:data:`LEAF_SIDE`), :func:`~prospero_jax.evaluators.leaf_kernels.leaf_kernel`
   evaluates each ambiguous tile's short tape at its 1,024 pixels.

Why the images are identical to brute force: intervals are sound for the dtype (see
:mod:`prospero_jax.ir.ops`), so painted tiles are right at every pixel; a ``min``/``max``
decided by intervals returns exactly the argument that replaces it (strict comparisons,
so no signed-zero ties); one replaced because only its sign matters is < 0 exactly
where that argument is (its ``sign_choose`` rule, applied only where no argument may be
NaN); and leaves evaluate the same op rules on the same float coordinates. Pixels whose
value is subnormal, or within a few ulps of 0 where XLA:CPU computes an op differently in
the fused closure and in the interpreter (transcendental functions; float32 division,
which the fused closure does not round correctly), are the only possible exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import UInt8

from prospero_jax.evaluators.cull import CHILDREN
from prospero_jax.ir.program import Program
from prospero_jax.renderers.hierarchy import (
    LEAF_SIDE,
    SPLIT,
    Frontier,
    leaf_parts,
    next_tapes,
    prune_level,
    root_side,
    root_tape,
    splits,
)
from prospero_jax.renderers.octree import walk
from prospero_jax.renderers.tile_grid import paint_tiles
from prospero_jax.renderers.view import Progress, Region, Target, View

#: The narrowest block a band of rows is cut into (see render_culled's ``rows``).
BAND_BLOCK = 256


def render_culled(
    program: Program,
    view: View,
    target: Target,
    *,
    progress: Progress | None = None,
    leaf: int = LEAF_SIDE,
    split: Sequence[int] = SPLIT,
    stats: list[dict[str, Any]] | None = None,
) -> UInt8[np.ndarray, "height size"]:
    """The view's image by culling (module docstring); the caller enters the target's
    precision.

    ``leaf`` is the side of the tiles evaluated point by point; ``split`` how the root and
    then every other level split their tiles (see
    :func:`~prospero_jax.renderers.hierarchy.splits`). If ``stats`` is a list, one
    dict per level is appended: tile side, tapes in, their rows, children painted inside,
    children left ambiguous, and wall seconds (for benchmarks; it adds no device syncs
    beyond those the level already has). A band of rows is rendered in blocks left to
    right: squares of the band's height, or for bands shorter than :data:`BAND_BLOCK`,
    blocks that wide. With several target devices, each level's kernel calls are spread
    over them, one call per device, as one computation sharded over a 1-D mesh
    (``shard_map``).
    """
    xs, ys = view.axes()
    if view.rows is None:
        return _render_square(program, xs, ys, view.z, target, progress, leaf, split, stats)
    height, size = view.height, view.size
    width = max(height, BAND_BLOCK)  # a short band goes in wide blocks, not tiny squares
    image = np.empty((height, size), np.uint8)
    squares = range(0, size, width)
    for done, left in enumerate(squares, 1):
        right = min(left + width, size)
        image[:, left:right] = _render_square(
            program, xs[left:right], ys, view.z, target, None, leaf, split, stats
        )
        if progress is not None:
            progress(done, len(squares))
    return image


def _render_square(
    program: Program,
    xs: np.ndarray,
    ys: np.ndarray,
    z: float,
    target: Target,
    progress: Progress | None,
    leaf: int,
    split: Sequence[int],
    stats: list[dict[str, Any]] | None,
) -> UInt8[np.ndarray, "ys xs"]:
    """The culled image at pixel centres ``xs × ys``, in a power-of-two square of tiles."""
    height, width = len(ys), len(xs)
    side = root_side(max(height, width), leaf)
    xs = np.pad(xs, (0, side - width), mode="edge").astype(target.dtype)
    ys = np.pad(ys, (0, side - height), mode="edge").astype(target.dtype)
    image = np.zeros((side, side), np.uint8)
    schedule = splits(side // leaf, split)
    levels = len(schedule) + 1  # prune levels + the leaf pass
    leaves: list[Frontier] = []  # the leaf tiles left ambiguous: one part, or none

    def paint(tile: int, rows: np.ndarray, cols: np.ndarray, *_: Any) -> None:
        paint_tiles(image, tile, rows, cols, 255)

    def counted(done: int) -> None:
        if progress is not None:
            progress(done, levels)

    walked: list[dict[str, Any]] = []
    walk(
        program, xs, ys, np.array([z], target.dtype), target, paint,
        lambda part, _: leaves.append(part), leaf=leaf, level_splits=[(k, 1) for k in schedule],
        leaf_thick=1, level_done=counted, stats=walked,
    )  # fmt: skip
    if stats is not None:  # the levels (not the leaves' collection), as a 2-D image counts
        stats.extend(
            {"tile": entry["side"], "tapes": entry["boxes"]}
            | {key: entry[key] for key in ("rows", "inside", "ambiguous", "seconds")}
            for entry in walked
            if entry["level"]
        )
    for front in leaves:
        started = time.perf_counter()
        inside = 0
        for first, part in leaf_parts(front, xs, ys, np.array([z]), target):
            at = slice(first, first + len(part))  # painted while later calls still run
            pixels = part[:, 0].view(np.uint8) * np.uint8(255)
            paint_tiles(image, front.side, front.rows[at], front.cols[at], pixels)
            inside += int(part.sum()) if stats is not None else 0
        if stats is not None:
            stats.append(
                {
                    "tile": "pixels",
                    "tapes": len(front.lengths),
                    "rows": int(front.lengths.sum()),
                    "inside": inside,
                    "ambiguous": 0,
                    "seconds": time.perf_counter() - started,
                }
            )
    if progress is not None:
        progress(levels, levels)
    return image[:height, :width]


def prune(
    program: Program,
    box: Region,
    *,
    z: float = 0.0,
    target: Target | None = None,
) -> tuple[float, float, Program | None]:
    """The value's interval over ``box = (xmin, xmax, ymin, ymax)`` and the pruned program.

    The pruned program is ``None`` when the interval decides the sign (< 0 or >= 0); else
    it is < 0 exactly where ``program`` is, at every point of the box (its value may
    differ where only the sign of a ``min``/``max`` argument mattered): what the culled
    renderer evaluates there, as a Program to inspect, time or write out.
    """
    target = target or Target()
    tapes = root_tape(program, target.dtype)
    lengths = np.array([len(tapes)], np.int64)
    bounds = np.asarray([*box, z, z], target.dtype)
    boxes = np.repeat(bounds[None, :, None], CHILDREN, axis=2)
    with target.precision():
        level = prune_level(tapes, lengths, boxes, target.device, len(tapes))
    lo, hi = float(level.lo[0, 0]), float(level.hi[0, 0])
    if level.kept[0, 0] == 0:
        return lo, hi, None
    rows = np.flatnonzero(level.emit[::CHILDREN])
    pruned_tape = next_tapes(tapes, rows, level, rows * CHILDREN)
    # The root tape's constants in float64 (the tape's may have overflowed in float32).
    exact = root_tape(program, "float64")
    pruned = pruned_tape.unpack(exact.consts[rows], exact.params)
    return lo, hi, pruned
