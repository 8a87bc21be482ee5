"""The interval hierarchy over boxes in x, y and z: the first surface from the top.

Input: a Program of (x, y, z); the pixel-centre axes of a power-of-two square (``xs``,
``ys``, as :func:`~prospero_jax.renderers.hierarchy.descend` takes them) and the depth
samples ``zs`` (top first, a power-of-two count, at least :data:`THICK`: pad with the
last); a :class:`~prospero_jax.renderers.view.Target`; and ``first``, per pixel column
the index of the first sample known to be inside (:data:`FAR` if none yet; -1 marks a
column never to evaluate, e.g. padding).
Output: :func:`first_inside` lowers ``first`` to each column's first inside sample, as
evaluating every sample top down would find it (the sign as images decide it).

How: one hierarchy of boxes, the root the whole square times all samples. Each level
splits every box ``k × k`` in x and y and ``kz`` in z (:func:`octree_splits`), prunes its
tape over the children with the culling kernels (or on the host tier), and then: a child
proved inside lowers its columns' ``first`` to its top sample; a child proved outside is
dropped; a child whose every column already has an inside sample at or above its top is
dropped (occluded); the rest go on with their pruned tapes. The leaf boxes (``leaf ×
leaf`` pixels, :data:`THICK` samples) are then evaluated point by point a layer at a
time, top down, each layer's boxes dropped first where the layers above have resolved
their columns. So the upper levels run once for the whole depth (where a slab sweep ran
them once per slab), and z is refined like x and y.

Invariants: ``first`` only decreases, and only to a sample where the value is < 0 (an
inside box's top sample, or a leaf sample found < 0), so the result equals the dense
search's first inside sample; children are lane-ordered ``(z, row, column)`` within
their parent; nothing compiles per program, box or tape.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from prospero_jax.evaluators import host_cull as _host
from prospero_jax.ir.program import Program
from prospero_jax.renderers.hierarchy import (
    SPLIT,
    Frontier,
    _kept_tiles,
    _kernels,
    host_depths,
    leaf_pixels,
    next_tapes,
    prune_level,
    root_tape,
    splits,
    tier,
    tile_view,
)
from prospero_jax.renderers.view import Progress, Target
from prospero_jax.runtime import executables as _executables

#: A leaf box: ``LEAF × LEAF`` pixels and ``THICK`` depth samples, 1,024 points the leaf
#: kernel evaluates a row at a time (as a 2-D leaf tile); small in x and y, so intervals
#: near a surface are tight: tanglecube 512³ 0.18 s against 0.35 s for 16 × 16 × 16 boxes
#: and 2.8 s for 32 × 32 × 16 (experiments/RESULTS.md).
LEAF = 8
THICK = 16
#: ``first`` of a column with no inside sample found yet.
FAR = np.iinfo(np.int64).max


def octree_splits(
    tiles: int, layers: int, pattern: Sequence[int] = SPLIT
) -> tuple[tuple[int, int], ...]:
    """How each level splits its boxes, ``(k, kz)``: ``k × k`` in x and y, ``kz`` in z, from
    ``tiles × tiles`` leaf columns and ``layers`` leaf layers (powers of two) at the root:
    x and y as :func:`~prospero_jax.renderers.hierarchy.splits` has them, z by as much
    as x and y while layers are left, then by up to the pattern's largest split alone."""
    out, left = [], layers
    for k in splits(tiles, pattern):
        kz = min(k, left)
        out.append((k, kz))
        left //= kz
    while left > 1:
        kz = min(max(pattern), left)
        out.append((1, kz))
        left //= kz
    return tuple(out)


def first_inside(
    program: Program,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    target: Target,
    first: np.ndarray,
    *,
    leaf: int = LEAF,
    progress: Progress | None = None,
    stats: list[dict[str, Any]] | None = None,
) -> None:
    """Lower ``first`` (``(side, side)``, int64, in place) to each column's first sample
    inside (module docstring). ``progress(done, total)`` counts levels and leaf layers;
    ``stats``, if a list, gets a dict per level and one for the leaves: box side and
    samples, boxes in, their rows, children proved inside, children left, wall seconds."""
    dtype, device, devices = target.dtype, target.device, target.devices
    side, samples = len(xs), len(zs)
    if samples % THICK or samples & (samples - 1) or side & (side - 1) or side < leaf:
        raise ValueError(f"{side}² columns × {samples} samples: not powers of two")
    tapes = root_tape(program, dtype)
    schedule = octree_splits(side // leaf, samples // THICK)
    lanes = [k * k * kz for k, kz in schedule]
    jobs = _kernels(lanes, len(tapes), dtype, leaf, len(tapes.params), THICK)
    host = tier(program, target, jobs, sweep=True) == "host"
    depths = host_depths(program, dtype) if host else None
    if not host and len(devices) < 2:
        _executables.prepare(jobs, device)
    zero = np.zeros(1, np.int64)
    front = Frontier(tapes, np.array([len(tapes)], np.int64), zero, zero, side, depths)
    layers, thick = zero, samples
    steps = len(schedule) + samples // THICK
    for done, (k, kz) in enumerate(schedule, 1):
        front, layers = _open(front, layers, first)
        if not len(front.lengths):
            break
        started = time.perf_counter()
        child, child_thick, count = front.side // k, thick // kz, k * k * kz
        lane_z, lane_row, lane_col = np.unravel_index(np.arange(count), (kz, k, k))
        rows = front.rows[:, None] + child * lane_row  # (parents, lanes)
        cols = front.cols[:, None] + child * lane_col
        tops = layers[:, None] + child_thick * lane_z
        boxes = np.stack(
            [
                xs[cols],
                xs[cols + child - 1],
                ys[rows + child - 1],
                ys[rows],
                zs[tops + child_thick - 1],
                zs[tops],
            ],
            axis=1,
        )  # (parents, [xlo, xhi, ylo, yhi, zlo, zhi], lanes)
        level = (
            _host.prune_layers(front.tapes, front.lengths, front.depth, boxes)
            if front.depth is not None
            else prune_level(front.tapes, front.lengths, boxes, device, len(tapes), devices)
        )
        inside, rows_in = level.inside, int(front.lengths.sum())
        _lower(first, child, rows[inside], cols[inside], tops[inside])
        lane, row = np.nonzero(level.emit.reshape(-1, count).T)
        order = level.kept.T > 0
        parents = len(front.lengths)
        front = Frontier(
            next_tapes(front.tapes, row, level, row * count + lane),
            level.kept.T[order].astype(np.int64),
            rows.T[order],
            cols.T[order],
            child,
            None if front.depth is None else front.depth[row],
        )
        layers, thick = tops.T[order], child_thick
        if stats is not None:
            stats.append(
                {
                    "box": f"{child} px × {child_thick}",
                    "boxes": parents,
                    "rows": rows_in,
                    "inside": int(inside.sum()),
                    "ambiguous": len(front.lengths),
                    "seconds": time.perf_counter() - started,
                }
            )
        if progress is not None:
            progress(done, steps)
    _leaves(front, layers, xs, ys, zs, target, first, len(schedule), steps, progress, stats)


def _open(front: Frontier, layers: np.ndarray, first: np.ndarray) -> tuple[Frontier, np.ndarray]:
    """The boxes of ``front`` with a column whose first inside sample is below their top
    (the others are occluded), and their layers."""
    blocks = tile_view(first, front.side)
    found = blocks[front.rows // front.side, :, front.cols // front.side, :]
    mask = np.asarray((found > layers[:, None, None]).any(axis=(1, 2)), bool)
    return _kept_tiles(front, mask), layers[mask]


def _lower(
    first: np.ndarray, side: int, rows: np.ndarray, cols: np.ndarray, tops: np.ndarray
) -> None:
    """``first`` lowered to ``tops`` over the ``side``-pixel squares at ``(rows, cols)``
    (a square may come more than once: its smallest top counts)."""
    if not len(rows):
        return
    order = np.lexsort((tops, cols, rows))
    key = rows[order] * first.shape[1] + cols[order]
    once = order[np.r_[True, key[1:] != key[:-1]]]  # each square's smallest top
    blocks = tile_view(first, side)
    at = (rows[once] // side, slice(None), cols[once] // side, slice(None))
    blocks[at] = np.minimum(blocks[at], tops[once][:, None, None])


def _leaves(
    front: Frontier, layers: np.ndarray, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray,
    target: Target, first: np.ndarray, done: int, steps: int, progress: Progress | None,
    stats: list[dict[str, Any]] | None,
) -> None:  # fmt: skip
    """The leaf boxes of ``front`` evaluated at their samples, a layer at a time, top
    down, each layer's occluded boxes dropped first."""
    started, evaluated, rows = time.perf_counter(), 0, 0
    order = np.argsort(layers, kind="stable")  # top layer first
    starts = np.concatenate([[0], np.cumsum(front.lengths)[:-1]])
    lengths = front.lengths[order]
    index = np.repeat(starts[order] - np.cumsum(lengths) + lengths, lengths)
    index += np.arange(len(index))
    front = Frontier(
        front.tapes.take(index), lengths, front.rows[order], front.cols[order], front.side,
        None if front.depth is None else front.depth[index],
    )  # fmt: skip
    layers = layers[order]
    changes = np.r_[True, layers[1:] != layers[:-1], True] if len(layers) else np.zeros(0, bool)
    bounds = np.flatnonzero(changes)
    side = front.side
    for a, b in itertools.pairwise(bounds):
        top = int(layers[a])
        part = _slice(front, int(a), int(b))
        part, _ = _open(part, layers[a:b], first)
        if len(part.lengths):
            inside = leaf_pixels(part, xs, ys, zs[top : top + THICK], target)  # [box, z, y, x]
            evaluated += len(part.lengths)
            rows += int(part.lengths.sum())
            hit = inside.any(axis=1)
            index = np.where(hit, top + inside.argmax(axis=1), FAR)
            blocks = tile_view(first, side)
            at = (part.rows // side, slice(None), part.cols // side, slice(None))
            blocks[at] = np.minimum(blocks[at], index)
        if progress is not None:
            progress(done + top // THICK + 1, steps)
    if progress is not None:
        progress(steps, steps)
    if stats is not None:
        stats.append(
            {
                "box": f"{side} px × {THICK} samples",
                "boxes": evaluated,
                "rows": rows,
                "inside": None,
                "ambiguous": 0,
                "seconds": time.perf_counter() - started,
            }
        )


def _slice(front: Frontier, a: int, b: int) -> Frontier:
    """Boxes ``a:b`` of ``front`` (consecutive, so their rows are a slice too)."""
    starts = np.concatenate([[0], np.cumsum(front.lengths)])
    span = slice(int(starts[a]), int(starts[b]))
    depth = None if front.depth is None else front.depth[span]
    return Frontier(
        front.tapes.take(span), front.lengths[a:b], front.rows[a:b], front.cols[a:b],
        front.side, depth,
    )  # fmt: skip
