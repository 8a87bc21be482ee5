"""A heightmap's columns searched for their first sample inside: leaf boxes evaluated by
the leaf kernel, or a last level and its leaves in one call.

Input: leaf boxes (a :class:`~prospero_jax.renderers.hierarchy.Frontier` of ``side``-pixel
squares, each with a tape and its depth samples) or their parents, the whole
pixel-centre axes and depths, and a heightmap's ``first`` (per column, the first sample
known inside: 2-D int32, :data:`~prospero_jax.evaluators.leaf_kernels.NOT_FOUND` where
none is yet).
Output: :func:`leaf_firsts` gives each box's first depth inside per column;
:func:`lower_firsts` (leaf boxes) and :func:`split_search` (their parents, pruned and
searched in one call of :func:`~prospero_jax.evaluators.leaf_kernels.split_search_kernel`)
lower ``first`` in place and return the squares they lowered.

Invariants: a box searches a column only above what is known, so boxes may come in any
order and find the same first samples; a square of columns is read from ``first`` and
written back once a call (:mod:`~prospero_jax.renderers.tile_grid`); the values are the
leaf kernel's, op by op in the target's dtype.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import numpy as np

from prospero_jax.evaluators.leaf_kernels import (
    LEAF_PIXEL_CAPACITY,
    NOT_FOUND,
    leaf_kernel,
    split_search_kernel,
)
from prospero_jax.evaluators.tape import Tapes, register_capacity, run_rows
from prospero_jax.ir.ops import PARAMS
from prospero_jax.renderers.hierarchy import Frontier, leaf_pixels, tapes_of
from prospero_jax.renderers.kernel_calls import (
    LEAF_ROW_CAPACITY,
    call_args,
    call_spans,
    dispatch,
    joined,
    leaf_args,
    leaf_calls,
)
from prospero_jax.renderers.tile_grid import paint_tiles, read_tiles
from prospero_jax.renderers.view import Target
from prospero_jax.runtime import executables as _executables
from prospero_jax.runtime.memory import aligned_empty, aligned_zeros

#: The longest parent tape :func:`split_search` takes (its kernel's registers: a child
#: is evaluated on its parent's rows, those it drops skipped, so a long parent would cost
#: every child its length).
SEARCH_ROWS = 64
#: Parents and squares of columns (64 to a parent split 8 × 8) in one :func:`split_search`
#: call: colonnade 512³ in one call, 1024³ in about four (frames 0.95× and 0.95× those of
#: 256 parents on 4,096 squares; 2,048 parents: no faster; experiments/RESULTS.md).
SEARCH_PARENTS = 1024
SEARCH_SQUARES = 16384


def kept_tiles(front: Frontier, mask: np.ndarray) -> Frontier:
    """``front`` without the tiles ``mask`` drops (their tapes cut out)."""
    if mask.all():
        return front
    rows = np.repeat(mask, front.lengths)
    depth = None if front.depth is None else front.depth[rows]
    return Frontier(
        front.tapes.take(rows), front.lengths[mask], front.rows[mask], front.cols[mask],
        front.side, depth,
    )  # fmt: skip


def leaf_firsts(
    front: Frontier,
    xs: np.ndarray,
    ys: np.ndarray,
    depths: np.ndarray,
    target: Target,
    limits: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> np.ndarray:
    """Each leaf tile of ``front``'s first of ``depths`` (the same for every tile, or a
    row a tile: ``(tiles, count)``; in their order) at which the value is < 0, per pixel:
    ``(tiles, side, side)`` int32, ``count`` where there is none; what
    :func:`~prospero_jax.renderers.hierarchy.leaf_pixels`' signs say, reduced where they
    are computed (on the kernels, a power of two of depths: the box's ``depths × side²``
    signs never leave the call).
    ``limits`` (``(tiles, side, side)`` int32, if given, any values): how many depths
    each column needs searched; a column's result is exact below its limit, and at or
    above it may be ``count`` (the kernels stop searching a box once every column is
    found or past its limit: a heightmap's column lowered to an index in the box needs
    nothing below it). ``offsets`` (``(tiles,)`` int32, if given): each tile's found
    index comes back plus its offset, and ``count`` as
    :data:`~prospero_jax.evaluators.leaf_kernels.NOT_FOUND` (a heightmap's sample indices)."""
    depths = np.asarray(depths)
    side, tiles, count = front.side, len(front.lengths), depths.shape[-1]
    if count > 1 and not count & (count - 1) and front.depth is None and tiles:
        zs = np.broadcast_to(depths.astype(target.dtype), (tiles, count))
        calls = leaf_calls(
            tapes_of(front), front.lengths, front.rows, front.cols, xs, ys, zs, target.device,
            side, target.devices, depth=count, firsts=True, limits=limits, offsets=offsets,
        )  # fmt: skip
        return joined([out for _, out in calls]).reshape(tiles, side, side)
    if depths.ndim == 1:
        first = first_true(leaf_pixels(front, xs, ys, depths, target))
    else:
        first = np.empty((tiles, side, side), np.int32)  # the tiles of each row of depths
        rows, which = np.unique(depths, axis=0, return_inverse=True)
        for k, row in enumerate(rows):
            mask = which.reshape(-1) == k
            first[mask] = first_true(leaf_pixels(kept_tiles(front, mask), xs, ys, row, target))
    return first if offsets is None else sample_indices(first, count, offsets)


def lower_firsts(
    front: Frontier,
    xs: np.ndarray,
    ys: np.ndarray,
    depths: np.ndarray,
    target: Target,
    first: np.ndarray,
    offsets: np.ndarray,
    caps: np.ndarray,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Lower ``first`` (a heightmap's first sample known inside per column, 2-D int32, in
    place) over ``front``'s leaf boxes (on the kernels, one device; a power of two of
    ``depths``, a row a box, the box's samples from ``offsets`` on; in their order, a
    square's boxes top down) to the first sample inside each finds, the boxes searching
    only above what is known and within their ``caps`` first depths (1 where the value
    is the same at every depth; the search goes a chunk of depths at a time, so it may
    find one beyond). The leaf kernel lowers each call's squares itself
    (:func:`~prospero_jax.evaluators.leaf_kernels.leaf_kernel`'s ``squares``): read once and
    written once a square here. Calls run one after another (a square in two calls
    reads the first's result). Returns, per call, the corners (rows, cols) of the squares
    it lowered and their columns after it, ``(squares, side, side)``."""
    side, count = front.side, depths.shape[-1]
    capacity = LEAF_PIXEL_CAPACITY // (side * side * count)
    tapes, lengths = tapes_of(front), front.lengths
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    zs = np.broadcast_to(depths.astype(target.dtype), (len(lengths), count))
    width, lowered = first.shape[1], []
    for t0, t1 in call_spans(lengths, LEAF_ROW_CAPACITY, capacity):
        rows, cols = front.rows[t0:t1], front.cols[t0:t1]
        corners, square = np.unique(rows.astype(np.int64) * width + cols, return_inverse=True)
        r, c = np.divmod(corners, width)
        known = aligned_empty((capacity, side * side), np.int32)  # rows past them unread
        known[: len(corners)] = read_tiles(first, side, r, c).reshape(len(corners), -1)
        at, which, cap = aligned_zeros((3, capacity), np.int32)
        at[: t1 - t0], which[: t1 - t0], cap[: t1 - t0] = offsets[t0:t1], square, caps[t0:t1]
        boxes = leaf_args(
            tapes, starts, lengths, front.rows, front.cols, xs, ys, zs, t0, t1, capacity, side
        )
        args = (*boxes, known, at, np.int32(NOT_FOUND), which, cap)
        registers = register_capacity(int(lengths[t0:t1].max()))
        [out] = dispatch(
            leaf_kernel, [(args, registers)], target.device, (), side=side, depth=count, firsts=True
        )
        after = np.asarray(out)[: len(corners) * side * side].reshape(-1, side, side)
        paint_tiles(first, side, r, c, after)
        lowered.append((r, c, after))
    return lowered


def split_search(
    front: Frontier,
    layers: np.ndarray,
    split: tuple[int, int],
    boxes: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    thick: int,
    target: Target,
    first: np.ndarray,
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
    """Lower ``first`` (a heightmap's first sample known inside per column, 2-D int32, in
    place) over the leaf boxes of ``front``'s boxes (tapes of at most :data:`SEARCH_ROWS`
    rows, ``thick`` samples from ``layers`` on; on the kernels, one device), each split
    ``split = (k, kz)`` into leaf boxes (their bounds ``boxes``, ``(parents, 6, lanes)``):
    a box proved inside lowers its columns to its top sample, an ambiguous one to the
    first sample inside it finds above what is known, as
    :func:`~prospero_jax.renderers.hierarchy.prune_level` and then :func:`lower_firsts`
    would, but in one call of
    :func:`~prospero_jax.evaluators.leaf_kernels.split_search_kernel` per
    :data:`SEARCH_PARENTS` parents (on at most :data:`SEARCH_SQUARES` leaf squares).
    ``xs``, ``ys``, ``zs``: the whole pixel-centre axes and depth samples. Returns, per
    call, the corners (rows, cols) of the leaf squares it lowered and their columns after
    it, ``(squares, side, side)``; and the counts of leaf boxes proved inside, left
    ambiguous and searched, the searched ones' rows and the chunks of depths they
    evaluated."""
    k, kz = split
    side, lanes = front.side // k, k * k * kz
    tapes, lengths, rows, cols = tapes_of(front), front.lengths, front.rows, front.cols
    width, blocks = first.shape[1], k * k
    block = rows.astype(np.int64) * width + cols  # each parent's square
    # A square's parents together, top down (squares apart share nothing): each call then
    # reads and writes back fewer squares (colonnade 1024³: the image once, not 3×;
    # frames 0.93× → 0.79× the leaf kernel's).
    order = np.lexsort((layers, block))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if (np.diff(order) != 1).any():
        tapes = tapes.take(run_rows(starts[order], lengths[order]))
        lengths, rows, cols, block = lengths[order], rows[order], cols[order], block[order]
        layers, boxes = layers[order], boxes[order]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    reads = tapes.z_reads()
    lane_row, lane_col = np.divmod(np.arange(blocks), k)
    lane_block = np.tile(np.arange(blocks), kz)  # each lane's square in its parent's
    pixel, sample = np.arange(k * side), np.arange(thick)
    lowered, counts = [], np.zeros(5, np.int64)
    for g0, g1 in _search_calls(block, SEARCH_PARENTS, SEARCH_SQUARES // blocks):
        n = g1 - g0
        corners, which = np.unique(block[g0:g1], return_inverse=True)
        r0, c0 = np.divmod(corners, width)
        r = (r0[:, None] + side * lane_row).reshape(-1)  # each parent square's leaf squares
        c = (c0[:, None] + side * lane_col).reshape(-1)
        known = aligned_empty((SEARCH_SQUARES, side * side), np.int32)  # rows past: unread
        known[: len(r)] = read_tiles(first, side, r, c).reshape(len(r), -1)
        squares = aligned_zeros((SEARCH_PARENTS, lanes), np.int32)
        squares[:n] = which.reshape(-1, 1) * blocks + lane_block
        px, py = (aligned_zeros((SEARCH_PARENTS, k * side), xs.dtype) for _ in range(2))
        px[:n], py[:n] = xs[cols[g0:g1, None] + pixel], ys[rows[g0:g1, None] + pixel]
        pz = aligned_zeros((SEARCH_PARENTS, thick), zs.dtype)
        pz[:n] = zs[layers[g0:g1, None] + sample]
        tops = aligned_zeros(SEARCH_PARENTS, np.int32)
        tops[:n] = layers[g0:g1]
        bounds = aligned_zeros((SEARCH_PARENTS, 6, lanes), boxes.dtype)
        bounds[:n] = boxes[g0:g1]
        padded, spans, count, n_rows = call_args(
            tapes, starts, lengths, g0, g1, SEARCH_PARENTS * SEARCH_ROWS, SEARCH_PARENTS
        )
        z_reads = aligned_zeros(len(padded), bool)
        z_reads[:n_rows] = reads[starts[g0] : starts[g0] + n_rows]
        args = (
            padded, spans, count, np.int32(n), bounds, px, py, pz, tops, squares, known,
            z_reads,
        )  # fmt: skip
        [(out, tally)] = dispatch(
            split_search_kernel, [(args, SEARCH_ROWS)], target.device, (), side=side,
            split=split,
        )  # fmt: skip
        after = np.asarray(out)[: len(r) * side * side].reshape(-1, side, side)
        paint_tiles(first, side, r, c, after)
        lowered.append((r, c, after))
        counts += np.asarray(tally)
    return lowered, counts


def search_job(
    split: tuple[int, int], dtype: str, leaf: int, atoms: int, thick: int
) -> _executables.Job:
    """The call :func:`split_search` makes for parents split ``split`` into leaf boxes of
    ``leaf`` pixels and ``thick`` samples (``atoms``: the rows of the atoms' table), to
    ready with a frame's other kernels (``hierarchy._kernels``)."""
    k, kz = split
    lanes, rows, parents = k * k * kz, SEARCH_PARENTS * SEARCH_ROWS, SEARCH_PARENTS

    def S(shape: tuple[int, ...], kind: Any) -> Any:  # an abstract array, for lowering
        return jax.ShapeDtypeStruct(shape, kind)  # type: ignore[no-untyped-call]

    table = S((atoms, PARAMS), dtype)
    tapes = Tapes(S((rows,), np.int32), S((rows, 2), np.int32), S((rows,), dtype), table)
    per_parent = S((parents,), np.int32)
    args = (
        tapes, per_parent, per_parent, S((), np.int32), S((parents, 6, lanes), dtype),
        S((parents, k * leaf), dtype), S((parents, k * leaf), dtype),
        S((parents, kz * thick), dtype), per_parent, S((parents, lanes), np.int32),
        S((SEARCH_SQUARES, leaf * leaf), np.int32), S((rows,), bool),
    )  # fmt: skip
    return split_search_kernel, args, {"registers": SEARCH_ROWS, "side": leaf, "split": split}


def _search_calls(block: np.ndarray, parents: int, squares: int) -> list[tuple[int, int]]:
    """Consecutive runs of parents (their squares ``block``, a square's parents
    together), each of at most ``parents`` parents on at most ``squares`` squares."""
    first = np.flatnonzero(np.r_[True, block[1:] != block[:-1]]).tolist()  # runs' starts
    out, g, held = [], 0, 0  # the open call's first parent and its squares
    for start, end in itertools.pairwise([*first, len(block)]):
        if held == squares:
            out.append((g, start))
            g, held = start, 0
        held += 1
        while end - g > parents:  # the call is full in the middle of this square's run
            out.append((g, g + parents))
            g, held = g + parents, 1
    if g < len(block):
        out.append((g, len(block)))
    return out


def sample_indices(first: np.ndarray, count: int, offsets: np.ndarray) -> np.ndarray:
    """Boxes' first depths ``first`` (``(boxes, ...)``, ``count`` where none) as sample
    indices: plus each box's offset, :data:`~prospero_jax.evaluators.leaf_kernels.NOT_FOUND`
    where none (on the host what the leaf kernel does with ``offsets``), int32."""
    index = first + offsets.reshape(-1, *[1] * (first.ndim - 1))
    return np.where(first < count, index, NOT_FOUND).astype(np.int32)


def first_true(inside: np.ndarray) -> np.ndarray:
    """``inside`` (``(tiles, depths, ...)``, bool) reduced over its depths: the first
    ``True``'s index, the number of depths where there is none (int32). Columns of a
    multiple of 8 depths (``(columns, depths)``, contiguous: the compiled leaves') are read
    8 at a time as words, the lowest set byte of each found from its lowest set bit (the
    bear's 1024³ compiled leaves, 625 k columns of 16: 36.6 → 24.4 ms a frame)."""
    columns, depths = inside.shape[:2]
    if inside.ndim != 2 or depths % 8 or not inside.flags.c_contiguous or not np.little_endian:
        first: np.ndarray = np.where(inside.any(axis=1), inside.argmax(axis=1), depths)
        return first.astype(np.int32)
    words = inside.view(np.uint64)  # byte k of a word is depth k of its 8 (little-endian)
    first = np.full(columns, depths, np.int32)
    for k in reversed(range(depths // 8)):
        word = words[:, k]
        lowest = word & (~word + np.uint64(1))  # its lowest set bit, a power of two
        _, exponent = np.frexp(lowest.astype(np.float64))  # exact: 2^e is 0.5 · 2^(e+1)
        np.copyto(first, (exponent - 1) // 8 + 8 * k, where=word != 0)
    return first
