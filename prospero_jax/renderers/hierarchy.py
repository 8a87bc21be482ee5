"""The culling hierarchy: prune levels over square tiles, then the leaf pass, as kernel
calls made from the host.

Input: a Program (packed once as the root tape, constants folded in as immediates), the
pixel-centre coordinates of a power-of-two square (``xs``, ``ys``: columns left to right,
rows top to bottom), a z interval and a :class:`~prospero_jax.renderers.view.Target`.
Output: :func:`descend` passes every tile the intervals prove inside to a ``paint``
callback and returns the leaf tiles left ambiguous (a :class:`Frontier`: their pruned
tapes and corners); :func:`leaf_pixels` evaluates those at given depths,
:func:`leaf_firsts` finds each column's first depth inside and :func:`lower_firsts`
lowers a heightmap's columns to it; :func:`split_search` does a heightmap's last level
and its leaves in one kernel call, nothing coming back to the host between. The 2-D renderer
(:mod:`prospero_jax.renderers.culled`), the heightmap sweep and the mesher
(:mod:`~prospero_jax.renderers.heightmap`, :mod:`~prospero_jax.renderers.mesh`)
are built from these.

How a level runs: each parent tile splits k × k (:func:`splits`, :data:`SPLIT`); the
parents' tapes go to :func:`~prospero_jax.evaluators.cull.prune_kernel` in as few calls as
fit its fixed capacities (a lane per child box), and host NumPy gathers each ambiguous
child's kept rows into the next level's tapes (vectorized over all tiles). A frame's kernels
are compiled at once before its first level (:func:`prospero_jax.runtime.executables.
prepare`). With several target devices, a level's calls are spread over them as one
``shard_map`` computation. On the *host tier* (:func:`tier`: a CPU, a sign program, a
frame that would not repay readying the kernels) NumPy does the same work instead, layer
by layer (:mod:`~prospero_jax.evaluators.host_cull`): the same tapes, the same images, and
nothing compiled or loaded.

Invariants: tapes stay in SSA order with operands local to their own tape; a tile's
children are lane-ordered row-major inside the parent, and the next level's tapes are
lane-major (child by child); nothing here compiles per program, tile or tape.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding

from prospero_jax.evaluators import host_cull as _host
from prospero_jax.evaluators.cull import (
    COMPILER_OPTIONS,
    GROUP_CAPACITY,
    LEAF_PIXEL_CAPACITY,
    NOT_FOUND,
    ROW_CAPACITY,
    SMALL_ROW_CAPACITY,
    dual_leaf_kernel,
    leaf_kernel,
    prune_kernel,
    split_search_kernel,
)
from prospero_jax.evaluators.tape import Pruned, Tapes, register_capacity, run_rows
from prospero_jax.ir import passes as _passes
from prospero_jax.ir.ops import CONST, PARAMS
from prospero_jax.ir.program import Program
from prospero_jax.renderers.sharding import line_mesh, pad_to
from prospero_jax.renderers.view import Progress, Target
from prospero_jax.runtime import executables as _executables
from prospero_jax.runtime.memory import aligned_empty, aligned_zeros

#: Side of the tiles evaluated point by point (see experiments/RESULTS.md for the choice).
LEAF_SIDE = 32
#: How the root, then every other level, splits its tiles (k: k × k children).
SPLIT = (4, 4)
#: Rows of all tapes in one leaf call.
LEAF_ROW_CAPACITY = 1 << 16
#: Depth samples (heightmaps) or grid cells (meshes) per slab of a 3-D sweep along z.
SLAB = 16
#: Rows of leaf tapes the host tier evaluates together (a byte a pixel: 2 MiB at 32 px).
HOST_LEAF_ROWS = 2048
#: The longest parent tape :func:`split_search` takes (its kernel's registers: a child
#: is evaluated on its parent's rows, those it drops skipped, so a long parent would cost
#: every child its length).
SEARCH_ROWS = 64
#: Parents and squares of columns (64 to a parent split 8 × 8) in one :func:`split_search`
#: call: colonnade 512³ in one call, 1024³ in about four (frames 0.95× and 0.95× those of
#: 256 parents on 4,096 squares; 2,048 parents: no faster; experiments/RESULTS.md).
SEARCH_PARENTS = 1024
SEARCH_SQUARES = 16384
#: Seconds a frame's kernels cost before their first call, by their
#: :func:`~prospero_jax.runtime.executables.readiness`: none in memory, ~0.4 s to load
#: prospero's three stored executables, ~3 s to compile them (2-core CPU,
#: experiments/RESULTS.md).
KERNEL_PRICE = {"ready": 0.0, "stored": 0.4, "missing": 3.0}
_rent = {"seconds": 0.0}  # what the host tier has cost this process so far


def root_side(extent: int, leaf: int = LEAF_SIDE) -> int:
    """The side of the root square for ``extent`` pixels (or grid points) a side: the next
    power of two, at least one leaf tile. Renderers pad their axes to it (edge values)."""
    return max(leaf, 1 << (extent - 1).bit_length())


def _chunks(lengths: np.ndarray, max_rows: int, max_groups: int) -> list[tuple[int, int]]:
    """Split consecutive tapes into calls of at most ``max_rows`` rows (or one tape, if
    longer) and ``max_groups`` tapes."""
    ends = np.cumsum(lengths)
    out, g = [], 0
    while g < len(lengths):
        base = ends[g - 1] if g else 0
        stop = int(np.searchsorted(ends, base + max_rows, side="right"))
        stop = min(max(stop, g + 1), g + max_groups, len(lengths))
        out.append((g, stop))
        g = stop
    return out


def _call_args(
    tapes: Tapes,
    starts: np.ndarray,
    lengths: np.ndarray,
    g0: int,
    g1: int,
    max_rows: int,
    capacity: int,
) -> tuple[Tapes, np.ndarray, np.ndarray, int]:
    """One call's inputs: its tapes padded to ``max_rows`` (or the next power of two), their
    spans padded to ``capacity``, and its row count."""
    first, stop = int(starts[g0]), int(starts[g1 - 1] + lengths[g1 - 1])
    n_rows = max(max_rows, 1 << (stop - first - 1).bit_length())
    local = aligned_zeros(capacity, np.int32)
    local[: g1 - g0] = starts[g0:g1] - first
    count = aligned_zeros(capacity, np.int32)
    count[: g1 - g0] = lengths[g0:g1]
    return tapes.take(slice(first, stop)).padded(n_rows), local, count, stop - first


def splits(tiles: int, pattern: Sequence[int] = SPLIT) -> tuple[int, ...]:
    """How each prune level splits its tiles (``k``: k × k children) on the way from the
    root to ``tiles × tiles`` leaves (powers of two): ``pattern`` from the root down, its
    last entry repeated, each cut to what is left. A 4 × 4 split costs a row about 2×
    a 2 × 2 one and does the work of two levels (``experiments/culled_levels.py --split``;
    an 8 × 8 one costs 5×: the interval rules' lanes are not free)."""
    out: list[int] = []
    while tiles > 1:
        k = min(pattern[min(len(out), len(pattern) - 1)], tiles)
        out.append(k)
        tiles //= k
    return tuple(out)


@functools.lru_cache(maxsize=16)
def root_tape(program: Program, dtype: str) -> Tapes:
    """The simplified program packed as a tape (cached: it is per program, not per frame)."""
    return Tapes.pack(_passes.simplify(program), dtype)


class PendingTapes(NamedTuple):
    """Child tapes not built yet: :func:`next_tapes` of these arguments, rows ``row`` of
    ``source`` with their operands from ``level`` at ``at``. Taken like built tapes (their
    index arrays, as many bytes a row), so boxes dropped before their leaves are evaluated
    (a heightmap's, behind a surface found above) never cost a tape: 3 in 4 of the
    tanglecube's 512³ leaf-level rows."""

    source: Tapes
    level: Pruned
    row: np.ndarray
    at: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    def take(self, rows: np.ndarray | slice) -> PendingTapes:
        return PendingTapes(self.source, self.level, self.row[rows], self.at[rows])

    def built(self) -> Tapes:
        return next_tapes(self.source, self.row, self.level, self.at)


class Frontier(NamedTuple):
    """Tiles still ambiguous after some prune levels: their pruned ``tapes`` (concatenated,
    ``lengths`` rows each; :class:`PendingTapes` until :func:`built`) and their top-left
    pixel ``rows``/``cols`` (tiles of ``side``); on the host tier, each row's ``depth``
    (:func:`~prospero_jax.evaluators.host_cull.row_depths`), else None. Leaf boxes whose
    level was split by intervals alone carry no tapes (no rows, ``lengths`` 0:
    :func:`~prospero_jax.renderers.octree.walk`'s ``bare``)."""

    tapes: Tapes | PendingTapes
    lengths: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    side: int
    depth: np.ndarray | None = None


@functools.lru_cache(maxsize=16)
def host_depths(program: Program, dtype: str) -> np.ndarray | None:
    """The root tape's row depths if the host tier can cull it (only inputs, constants,
    atoms, ``min`` and ``max``, at most :data:`~prospero_jax.evaluators.host_cull.MAX_DEPTH`
    deep: a sign program), else None."""
    tapes = root_tape(program, dtype)
    if not _host.layered(tapes.ops):
        return None
    depth = _host.row_depths(tapes)
    return depth if depth.max() <= _host.MAX_DEPTH else None


def tier(
    program: Program, target: Target, jobs: Sequence[_executables.Job], *, sweep: bool = False
) -> str:
    """Who culls a frame: ``"host"`` (NumPy:
    :mod:`~prospero_jax.evaluators.host_cull`) or ``"kernels"`` (XLA). The host tier needs a
    CPU target, one device and a program it can cull (:func:`host_depths`); then
    ``target.tier`` decides, and ``"auto"`` rents before it buys: the host tier draws
    images until it has cost the process what readying the kernels would
    (:data:`KERNEL_PRICE`), so a single render compiles and loads nothing and a long
    session pays the kernels once, at most about twice what knowing the future would have
    cost. A ``sweep`` (a slab of a heightmap or a mesh: one of dozens of frames, which
    repay the kernels at once) goes to the kernels under ``"auto"``. (A host frame of
    prospero costs ~6.5× a kernel frame at 1024² and ~3.6× at 4096², mostly NumPy's
    per-call overhead: experiments/RESULTS.md.)"""
    kernels = target.tier in ("kernels", "compiled")  # "compiled": kernels, closures bought
    if kernels or target.platform != "cpu" or len(target.devices) > 1:
        return "kernels"
    if host_depths(program, target.dtype) is None:
        return "kernels"
    if target.tier == "host":
        return "host"
    if sweep:
        return "kernels"
    price = KERNEL_PRICE[_executables.readiness(jobs, target.device)]
    return "host" if _rent["seconds"] < price else "kernels"


#: ``paint(side, rows, cols)``: the tiles of ``side`` at those corners are inside.
Paint = Callable[[int, np.ndarray, np.ndarray], None]


def descend(
    program: Program,
    xs: np.ndarray,
    ys: np.ndarray,
    z: tuple[float, float],
    target: Target,
    paint: Paint,
    *,
    leaf: int = LEAF_SIDE,
    split: Sequence[int] = SPLIT,
    progress: Progress | None = None,
    stats: list[dict[str, Any]] | None = None,
) -> Frontier:
    """The prune levels over the square of pixel centres ``xs × ys`` (a power of two, at
    least ``leaf``, in the target's dtype) with z in ``[z[0], z[1]]``: tiles proved inside
    are passed to ``paint``, and the ``leaf``-side tiles left ambiguous are returned with
    their pruned tapes. ``progress`` counts levels, the leaves' pass included (the caller
    reports that last step)."""
    dtype, device, devices = target.dtype, target.device, target.devices
    side = len(xs)
    tapes = root_tape(program, dtype)
    root = len(tapes)
    schedule = splits(side // leaf, split)
    levels = len(schedule) + 1  # prune levels + the leaf pass
    jobs = _kernels([k * k for k in schedule], root, dtype, leaf, len(tapes.params))
    host = tier(program, target, jobs, sweep=z[0] != z[1]) == "host"
    depths = host_depths(program, dtype) if host else None
    if not host and len(devices) < 2:
        _executables.prepare(jobs, device)
    lengths = np.array([root], np.int64)
    front = Frontier(tapes, lengths, *(np.zeros(1, np.int64),) * 2, side, depths)
    started_host = time.perf_counter()
    for depth, k in enumerate(schedule, 1):
        if not len(front.lengths):
            break
        started = time.perf_counter()
        _, lengths, rows, cols, tile, _ = front
        tapes = tapes_of(front)
        child, lanes = tile // k, k * k  # a k × k split
        lane_rows, lane_cols = np.divmod(np.arange(lanes), k)
        child_rows = rows[:, None] + child * lane_rows  # (parents, lanes), lane order
        child_cols = cols[:, None] + child * lane_cols  # row-major within the parent
        boxes = np.stack(
            [
                xs[child_cols],
                xs[child_cols + child - 1],
                ys[child_rows + child - 1],
                ys[child_rows],
                np.full(child_cols.shape, z[0], dtype),
                np.full(child_cols.shape, z[1], dtype),
            ],
            axis=1,
        )  # (parents, [xlo, xhi, ylo, yhi, zlo, zhi], lanes)
        level = (
            _host.prune_layers(tapes, lengths, front.depth, boxes)
            if front.depth is not None
            else prune_level(tapes, lengths, boxes, device, root, devices)
        )
        inside = np.flatnonzero(level.inside)
        paint(child, child_rows.ravel()[inside], child_cols.ravel()[inside])

        # Next level: every ambiguous child's kept rows, lane-major (child by child).
        row, at = emitted(level, lanes)
        left = kept_children(level.kept)
        front = Frontier(
            next_tapes(tapes, row, level, at),
            level.kept.ravel()[left].astype(np.int64),
            child_rows.ravel()[left],
            child_cols.ravel()[left],
            child,
            None if front.depth is None else front.depth[row],
        )
        if stats is not None:
            stats.append(
                {
                    "tile": child,
                    "tapes": len(lengths),
                    "rows": int(lengths.sum()),
                    "inside": len(inside),
                    "ambiguous": len(front.lengths),
                    "seconds": time.perf_counter() - started,
                }
            )
        if progress is not None:
            progress(depth, levels)
    if host:
        _rent["seconds"] += time.perf_counter() - started_host
    return front


def _kept_tiles(front: Frontier, mask: np.ndarray) -> Frontier:
    """``front`` without the tiles ``mask`` drops (their tapes cut out)."""
    if mask.all():
        return front
    rows = np.repeat(mask, front.lengths)
    depth = None if front.depth is None else front.depth[rows]
    return Frontier(
        front.tapes.take(rows), front.lengths[mask], front.rows[mask], front.cols[mask],
        front.side, depth,
    )  # fmt: skip


def leaf_pixels(
    front: Frontier,
    xs: np.ndarray,
    ys: np.ndarray,
    depths: np.ndarray,
    target: Target,
    *,
    values: bool = False,
) -> np.ndarray:
    """Each leaf tile of ``front`` evaluated at its pixels, at each of ``depths``:
    ``(tiles, depths, side, side)``, ``[t, d, row, col]``: whether the value is < 0, or
    with ``values`` the value itself (in the target's dtype). On the kernels, a power of
    two of depths makes each tile one box of the leaf kernel (``depth``: a row step for
    all its points); otherwise every (tile, depth) pair is one tile of the leaf kernel (or,
    for signs on the host tier, of :func:`~prospero_jax.evaluators.host_cull.leaf_signs`),
    its tape repeated. :func:`leaf_parts` gives the same in parts, as they come."""
    side, tiles, count = front.side, len(front.lengths), len(depths)
    parts = [part for _, part in leaf_parts(front, xs, ys, depths, target, values=values)]
    if not parts:
        return np.zeros((0, count, side, side), target.dtype if values else bool)
    return _joined(parts).reshape(tiles, count, side, side)


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
    :func:`leaf_pixels`' signs say, reduced where they are computed (on the kernels, a
    power of two of depths: the box's ``depths × side²`` signs never leave the call).
    ``limits`` (``(tiles, side, side)`` int32, if given, any values): how many depths
    each column needs searched; a column's result is exact below its limit, and at or
    above it may be ``count`` (the kernels stop searching a box once every column is
    found or past its limit: a heightmap's column lowered to an index in the box needs
    nothing below it). ``offsets`` (``(tiles,)`` int32, if given): each tile's found
    index comes back plus its offset, and ``count`` as
    :data:`~prospero_jax.evaluators.cull.NOT_FOUND` (a heightmap's sample indices)."""
    depths = np.asarray(depths)
    side, tiles, count = front.side, len(front.lengths), depths.shape[-1]
    if count > 1 and not count & (count - 1) and front.depth is None and tiles:
        zs = np.broadcast_to(depths.astype(target.dtype), (tiles, count))
        calls = _leaves(
            tapes_of(front), front.lengths, front.rows, front.cols, xs, ys, zs, target.device,
            side, target.devices, depth=count, firsts=True, limits=limits, offsets=offsets,
        )  # fmt: skip
        return _joined([out for _, out in calls]).reshape(tiles, side, side)
    if depths.ndim == 1:
        first = first_true(leaf_pixels(front, xs, ys, depths, target))
    else:
        first = np.empty((tiles, side, side), np.int32)  # the tiles of each row of depths
        rows, which = np.unique(depths, axis=0, return_inverse=True)
        for k, row in enumerate(rows):
            mask = which.reshape(-1) == k
            first[mask] = first_true(leaf_pixels(_kept_tiles(front, mask), xs, ys, row, target))
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
    (:func:`~prospero_jax.evaluators.cull.leaf_kernel`'s ``squares``): read once and
    written once a square here. Calls run one after another (a square in two calls
    reads the first's result). Returns, per call, the corners (rows, cols) of the squares
    it lowered and their columns after it, ``(squares, side, side)``."""
    side, count = front.side, depths.shape[-1]
    capacity = LEAF_PIXEL_CAPACITY // (side * side * count)
    tapes, lengths = tapes_of(front), front.lengths
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    zs = np.broadcast_to(depths.astype(target.dtype), (len(lengths), count))
    width, lowered = first.shape[1], []
    for t0, t1 in _chunks(lengths, LEAF_ROW_CAPACITY, capacity):
        rows, cols = front.rows[t0:t1], front.cols[t0:t1]
        corners, square = np.unique(rows.astype(np.int64) * width + cols, return_inverse=True)
        r, c = np.divmod(corners, width)
        known = aligned_empty((capacity, side * side), np.int32)  # rows past them unread
        known[: len(corners)] = read_tiles(first, side, r, c).reshape(len(corners), -1)
        at, which, cap = aligned_zeros((3, capacity), np.int32)
        at[: t1 - t0], which[: t1 - t0], cap[: t1 - t0] = offsets[t0:t1], square, caps[t0:t1]
        boxes = _leaf_args(
            tapes, starts, lengths, front.rows, front.cols, xs, ys, zs, t0, t1, capacity, side
        )
        args = (*boxes, known, at, np.int32(NOT_FOUND), which, cap)
        registers = register_capacity(int(lengths[t0:t1].max()))
        [out] = _dispatch(
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
    first sample inside it finds above what is known, as :func:`prune_level` and then
    :func:`lower_firsts` would, but in one call of :func:`~prospero_jax.evaluators.cull.
    split_search_kernel` per :data:`SEARCH_PARENTS` parents (on at most
    :data:`SEARCH_SQUARES` leaf squares). ``xs``, ``ys``, ``zs``: the whole pixel-centre
    axes and depth samples. Returns, per call, the corners (rows, cols) of the leaf
    squares it lowered and their columns after it, ``(squares, side, side)``; and the
    counts of leaf boxes proved inside, left ambiguous and searched, the searched ones'
    rows and the chunks of depths they evaluated."""
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
        padded, spans, count, n_rows = _call_args(
            tapes, starts, lengths, g0, g1, SEARCH_PARENTS * SEARCH_ROWS, SEARCH_PARENTS
        )
        z_reads = aligned_zeros(len(padded), bool)
        z_reads[:n_rows] = reads[starts[g0] : starts[g0] + n_rows]
        args = (
            padded, spans, count, np.int32(n), bounds, px, py, pz, tops, squares, known,
            z_reads,
        )  # fmt: skip
        [(out, tally)] = _dispatch(
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
    ready with a frame's other kernels (:func:`_kernels`)."""
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
    indices: plus each box's offset, :data:`~prospero_jax.evaluators.cull.NOT_FOUND`
    where none (on the host what the leaf kernel does with ``offsets``), int32."""
    index = first + offsets.reshape(-1, *[1] * (first.ndim - 1))
    return np.where(first < count, index, NOT_FOUND).astype(np.int32)


def first_true(inside: np.ndarray) -> np.ndarray:
    """``inside`` (``(tiles, depths, ...)``, bool) reduced over its depths: the first
    ``True``'s index, the number of depths where there is none (int32)."""
    first: np.ndarray = np.where(inside.any(axis=1), inside.argmax(axis=1), inside.shape[1])
    return first.astype(np.int32)


def leaf_parts(
    front: Frontier,
    xs: np.ndarray,
    ys: np.ndarray,
    depths: np.ndarray,
    target: Target,
    *,
    values: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`leaf_pixels`' result in consecutive parts, one per kernel call (or host
    chunk), each read back only when the caller asks for it: ``(first, part)``, where
    ``part`` is ``(tiles, depths, side, side)`` for the tiles ``first, first + 1, ...``.
    A caller that uses each part at once (the 2-D renderer paints it) overlaps that work
    with the calls still running."""
    side, tiles, count = front.side, len(front.lengths), len(depths)
    if not tiles:
        return
    if count > 1 and not count & (count - 1) and (front.depth is None or values):
        zs = np.broadcast_to(np.asarray(depths, target.dtype), (tiles, count))
        calls = _leaves(
            tapes_of(front), front.lengths, front.rows, front.cols, xs, ys, zs, target.device,
            side, target.devices, values=values, depth=count,
        )  # fmt: skip
        for first, out in calls:
            yield first, out.reshape(-1, count, side, side)
        return
    order = np.repeat(np.arange(tiles), count)  # tile-major: a tile's depths together
    lengths, tapes, depth = front.lengths[order], tapes_of(front), front.depth
    if count > 1:
        starts = np.concatenate([[0], np.cumsum(front.lengths)[:-1]])
        repeated = run_rows(starts[order], lengths)
        tapes = tapes.take(repeated)  # each tape, repeated
        depth = None if depth is None else depth[repeated]
    zs = np.tile(np.asarray(depths, target.dtype), tiles)
    if depth is not None and not values:
        pixel = np.arange(side)
        rows, cols = front.rows[order, None] + pixel, front.cols[order, None] + pixel
        ends = np.concatenate([[0], np.cumsum(lengths)])
        # Whole tiles (all their depths) a chunk, so parts split at tiles.
        per_tile = np.add.reduceat(lengths, np.arange(0, len(lengths), count))
        for g0, g1 in _chunks(per_tile, HOST_LEAF_ROWS, tiles):  # values stay in cache
            started = time.perf_counter()
            t0, t1 = g0 * count, g1 * count
            span = slice(ends[t0], ends[t1])
            signs = _host.leaf_signs(
                tapes.take(span), lengths[t0:t1], depth[span], xs[cols[t0:t1]],
                ys[rows[t0:t1]], zs[t0:t1],
            )  # fmt: skip
            _rent["seconds"] += time.perf_counter() - started
            yield g0, signs.reshape(-1, count, side, side)
        return
    calls = _leaves(
        tapes, lengths, front.rows[order], front.cols[order], xs, ys, zs, target.device,
        side, target.devices, values=values,
    )  # fmt: skip
    if count == 1:
        for first, out in calls:
            yield first, out.reshape(-1, 1, side, side)
    else:  # a call may end inside a tile's depths: one part
        yield 0, _joined([out for _, out in calls]).reshape(tiles, count, side, side)


def dual_call_groups(n: int) -> int:
    """How many groups of ``n`` points one call of :func:`tile_duals` holds (a call costs
    ~1 ms whatever it holds: colonnade's 1024² normals, experiments/RESULTS.md)."""
    return max(1, LEAF_PIXEL_CAPACITY // (4 * n))


def tile_duals(
    tapes: Tapes,
    lengths: np.ndarray,
    points: np.ndarray,
    target: Target,
    where: np.ndarray | None = None,
    turn: np.ndarray | None = None,
) -> np.ndarray:
    """Value and gradient of each tape ``t`` of ``tapes`` (``lengths`` rows each) at its
    points ``points[t] = [x, y, z] × n``: ``(tapes, 4, n)``, the value then its partial
    derivatives in x, y and z (:func:`~prospero_jax.evaluators.cull.dual_leaf_kernel`, on
    the target's device). With ``where`` (``(tapes, n)`` bool) and ``turn`` (a 3 × 3
    matrix in the target's dtype, or None), the gradients turned and made unit length in
    the kernel instead, NaN where ``where`` is False: ``(tapes, n, 3)``."""
    n = points.shape[2]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    capacity = dual_call_groups(n)
    calls, spans = [], []
    for t0, t1 in _chunks(lengths, LEAF_ROW_CAPACITY, capacity):
        padded, spans_, n_rows, _ = _call_args(
            tapes, starts, lengths, t0, t1, LEAF_ROW_CAPACITY, capacity
        )
        # The groups past the call's count are never read (the kernel loops to it): not
        # zeroed (3 MB a call of 1,024 groups of 256 points, ~0.4 ms).
        at = aligned_empty((capacity, 3, n), points.dtype)
        at[: t1 - t0] = points[t0:t1]
        args: tuple[Any, ...] = (padded, spans_, n_rows, np.int32(t1 - t0), at)
        if where is not None:
            mask = aligned_empty((capacity, n), bool)
            mask[: t1 - t0] = where[t0:t1]
            args = (*args, mask, turn)
        registers = register_capacity(int(lengths[t0:t1].max()))
        calls.append((args, registers))
        spans.append((t0, t1))
    outs = _dispatch(dual_leaf_kernel, calls, target.device, ())  # as the leaf pass does
    if where is not None:
        return _joined(
            [np.asarray(out)[: t1 - t0] for (t0, t1), out in zip(spans, outs, strict=True)]
        )
    parts = [
        np.asarray(out)[: (t1 - t0) * 4 * n] for (t0, t1), out in zip(spans, outs, strict=True)
    ]
    return np.concatenate(parts).reshape(-1, 4, n)


def _kernels(
    lanes: Sequence[int],
    root: int,
    dtype: str,
    leaf: int,
    atoms: int,
    depth: int = 1,
    *,
    large: bool = False,
) -> list[_executables.Job]:
    """The kernel calls a frame will make (their shapes), to compile them all at once: a
    prune kernel for each level's ``lanes`` (children per parent; the root's tape of
    ``root`` rows first) in the small call shape, and with ``large`` (a solid's levels,
    which hold many rows) in the large one too (else it compiles when met) and the last
    level's intervals-only variant (``prune=False``: above compiled leaves), and the leaf
    kernel, for leaf tapes of up to 1,024 rows (a longer one compiles when met; with
    ``depth``, as :func:`lower_firsts` calls it); ``atoms``: the rows of the atoms'
    table."""

    def S(shape: tuple[int, ...], dtype: Any) -> Any:  # an abstract array, for lowering
        return jax.ShapeDtypeStruct(shape, dtype)  # type: ignore[no-untyped-call]

    def tapes(rows: int) -> Tapes:
        table = S((atoms, PARAMS), dtype)
        return Tapes(S((rows,), np.int32), S((rows, 2), np.int32), S((rows,), dtype), table)

    def spans(n: int) -> tuple[Any, Any, Any]:
        return S((n,), np.int32), S((n,), np.int32), S((), np.int32)

    jobs: list[_executables.Job] = []
    for count in dict.fromkeys(lanes):  # distinct, in order
        max_groups = GROUP_CAPACITY // count
        rows = _call_rows(root, count) if count == lanes[0] else SMALL_ROW_CAPACITY // count
        boxes = S((max_groups, 6, count), dtype)
        for size in dict.fromkeys([rows, *([ROW_CAPACITY // count] if large else [])]):
            args = (tapes(size), *spans(max_groups), boxes)
            static = {"registers": register_capacity(root)}
            jobs.append((prune_kernel, args, static))
            if large and count == lanes[-1]:
                jobs.append((prune_kernel, args, {**static, "prune": False}))
    tiles = LEAF_PIXEL_CAPACITY // (leaf * leaf * depth)
    pixels = S((tiles, leaf), dtype)
    zs = S((tiles,) if depth == 1 else (tiles, depth), dtype)
    leaves = (tapes(LEAF_ROW_CAPACITY), *spans(tiles), pixels, pixels, zs)
    static = {"registers": register_capacity(1), "side": leaf}
    if depth == 1:
        jobs.append((leaf_kernel, leaves, static))
    else:  # boxes of samples lowering a heightmap's squares (lower_firsts)
        known, per_box = S((tiles, leaf * leaf), np.int32), S((tiles,), np.int32)
        search = (*leaves, known, per_box, S((), np.int32), per_box, per_box)
        jobs.append((leaf_kernel, search, {**static, "depth": depth, "firsts": True}))
    return jobs


def built(front: Frontier) -> Frontier:
    """``front`` with its tapes built (itself if they are)."""
    if isinstance(front.tapes, PendingTapes):
        return front._replace(tapes=front.tapes.built())
    return front


def tapes_of(front: Frontier) -> Tapes:
    """``front``'s tapes, which must be built: the kernels read nothing else."""
    if not isinstance(front.tapes, Tapes):
        raise TypeError("a frontier's pending tapes must be built before they are read")
    return front.tapes


def kept_children(kept: np.ndarray) -> np.ndarray:
    """The children ``kept`` (``(parents, lanes)`` rows kept, 0: none) gives a tape, lane
    by lane (as :func:`emitted` orders their tapes), as flat places ``parent · lanes +
    lane`` in a level's per-child arrays: the mask searched once, then one gather per
    array (a boolean index over each transposed array searched it each time: four arrays
    of a level shaped as colonnade 1024³'s, 1,936 × 64 children, 28 % left, 3.9 → 1.1 ms)."""
    lane, parent = np.divmod(np.flatnonzero(kept.T > 0), kept.shape[0])
    return np.asarray(parent * kept.shape[1] + lane)


def emitted(level: Pruned, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``level``'s children keep, lane-major (child by child, each in its parent's
    row order): each one's row of the parents' tapes and its place in ``level``'s per-row
    arrays (``row · lanes + lane``), as :func:`next_tapes` takes them. One pass over the
    lanes' rows as booleans, not a two-index ``nonzero`` over a transposed view
    (colonnade 1024³'s level of 17 k rows × 32 lanes: 3.0 → 2.3 ms), nor over the codes'
    transposed copy (int8, 17 k rows × 64 lanes, 6 % kept: 5.2 → 3.4 ms)."""
    per_lane = level.emit.reshape(-1, lanes).T.astype(bool)  # ravelled lane by lane below
    lane, row = np.divmod(np.flatnonzero(per_lane), per_lane.shape[1])
    return row, row * lanes + lane


def next_tapes(tapes: Tapes, row: np.ndarray, level: Pruned, at: np.ndarray) -> Tapes:
    """The kept rows ``row`` of ``tapes`` with their new operands (``at``: their
    ``(row, lane)`` entries in the level's outputs); a row replaced by its immediate (emit
    code 2) becomes a ``const`` row."""
    ops = tapes.ops[row]
    args = np.stack([level.new_a[at], level.new_b[at]], axis=1)
    to_constant = np.flatnonzero(level.emit[at] == 2)
    if len(to_constant):
        ops[to_constant] = CONST
        args[to_constant] = 0
    return Tapes(ops, args, tapes.consts[row], tapes.params)


def _call_rows(rows: int, lanes: int) -> int:
    """The rows a prune call of ``rows`` rows (of ``lanes`` lanes) is padded to: the small
    shape's if they fit (:data:`~prospero_jax.evaluators.cull.SMALL_ROW_CAPACITY`), else the
    large one's, or the next power of two for a longer tape."""
    if rows * lanes <= SMALL_ROW_CAPACITY:
        return SMALL_ROW_CAPACITY // lanes
    return max(ROW_CAPACITY // lanes, 1 << (rows - 1).bit_length())


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def prune_level(
    tapes: Tapes,
    lengths: np.ndarray,
    boxes: np.ndarray,
    device: jax.Device,
    root_length: int,
    devices: Sequence[jax.Device] = (),
    *,
    prune: bool = True,
) -> Pruned:
    """Run :func:`prune_kernel` over all parents of one level, in as few calls as fit;
    with ``prune=False`` intervals only (``kept`` 1 for an ambiguous child; ``emit``,
    ``new_a`` and ``new_b`` empty: the children get no tapes)."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    calls, sizes = [], []
    # One register size per program (not per call): fewer compilations, same speed.
    registers = register_capacity(root_length)
    lanes = boxes.shape[2]
    max_rows, max_groups = ROW_CAPACITY // lanes, GROUP_CAPACITY // lanes
    for g0, g1 in _chunks(lengths, max_rows, _per_call(len(lengths), max_groups, devices)):
        rows = int(starts[g1 - 1] + lengths[g1 - 1] - starts[g0])
        padded, spans, counts, n_rows = _call_args(
            tapes, starts, lengths, g0, g1, _call_rows(rows, lanes), max_groups
        )
        box = aligned_zeros((max_groups, 6, lanes), boxes.dtype)
        box[: g1 - g0] = boxes[g0:g1]
        calls.append(((padded, spans, counts, np.int32(g1 - g0), box), registers))
        sizes.append((g1 - g0, n_rows))
    static = {} if prune else {"prune": False}
    outs = _dispatch(prune_kernel, calls, device, devices, **static)  # dispatched; read below
    parts: list[list[np.ndarray]] = [[] for _ in Pruned._fields]
    for (n_groups, n_rows), out in zip(sizes, outs, strict=True):
        for k, values in enumerate(out if prune else out[:4]):
            size = (n_groups if k < 4 else n_rows) * lanes  # per child, then per row
            parts[k].append(np.asarray(values)[:size])
    if not prune:
        parts[4:] = [[np.zeros(0, dtype)] for dtype in (np.int8, np.int32, np.int32)]
    lo, hi, inside, kept, emit, new_a, new_b = map(_joined, parts)
    lo, hi, inside, kept = (v.reshape(-1, lanes) for v in (lo, hi, inside, kept))
    return Pruned(lo, hi, inside, kept, emit, new_a, new_b)


def _leaves(
    tapes: Tapes,
    lengths: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    device: jax.Device,
    side: int,
    devices: Sequence[jax.Device] = (),
    values: bool = False,
    depth: int = 1,
    firsts: bool = False,
    limits: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Inside-masks of the ambiguous ``side × side`` tiles at depths ``zs`` (one per tile,
    or with ``depth`` a row of that many per tile), or with ``values`` the values
    themselves, or with ``firsts`` (and ``depth``) each column's first depth inside
    (``depth`` if none; searched as far as ``limits``; plus ``offsets``, or
    :data:`~prospero_jax.evaluators.cull.NOT_FOUND` if none: as :func:`leaf_firsts`
    takes them):
    every kernel call dispatched now, then read back one by one as the iterator is
    advanced, ``(first tile, (tiles, depth × side²))`` a call (``(tiles, side²)`` with
    ``firsts``)."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    calls, spans = [], []
    capacity = LEAF_PIXEL_CAPACITY // (side * side * depth)
    per_call = _per_call(len(lengths), capacity, devices)
    for t0, t1 in _chunks(lengths, LEAF_ROW_CAPACITY, per_call):
        args = _leaf_args(tapes, starts, lengths, rows, cols, xs, ys, zs, t0, t1, capacity, side)
        if firsts:  # the depths each column needs searched (the padding: none)
            limit = aligned_zeros((capacity, side * side), np.int32)
            limit[: t1 - t0] = depth if limits is None else limits[t0:t1].reshape(-1, side * side)
            offset = aligned_zeros(capacity, np.int32)
            if offsets is not None:
                offset[: t1 - t0] = offsets[t0:t1]
            none = np.int32(depth if offsets is None else NOT_FOUND)
            args = (*args, limit, offset, none)
        registers = register_capacity(int(lengths[t0:t1].max()))
        calls.append((args, registers))
        spans.append((t0, t1))
    static: dict[str, Any] = {"side": side, "values": True} if values else {"side": side}
    if depth > 1:
        static["depth"] = depth
    if firsts:
        static["firsts"] = True
    outs = _dispatch(leaf_kernel, calls, device, devices, **static)
    pixels = side * side * (1 if firsts else depth)

    def read() -> Iterator[tuple[int, np.ndarray]]:
        for (t0, t1), out in zip(spans, outs, strict=True):
            yield t0, np.asarray(out)[: (t1 - t0) * pixels].reshape(-1, pixels)

    return read()


def _leaf_args(
    tapes: Tapes,
    starts: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    t0: int,
    t1: int,
    capacity: int,
    side: int,
) -> tuple[Any, ...]:
    """A leaf kernel call's first inputs for tiles ``t0:t1`` (of tapes starting at
    ``starts``, corners ``rows``, ``cols``, depths ``zs``, a row a tile): their tapes,
    spans and count, and each tile's pixel axes and depths, padded to ``capacity`` tiles
    (aligned: :mod:`~prospero_jax.runtime.memory`)."""
    pixel = np.arange(side)
    padded, spans, n_rows, _ = _call_args(
        tapes, starts, lengths, t0, t1, LEAF_ROW_CAPACITY, capacity
    )
    tx = aligned_zeros((capacity, side), xs.dtype)
    ty = aligned_zeros((capacity, side), ys.dtype)
    tz = aligned_zeros((capacity, *zs.shape[1:]), zs.dtype)
    tx[: t1 - t0] = xs[cols[t0:t1, None] + pixel]
    ty[: t1 - t0] = ys[rows[t0:t1, None] + pixel]
    tz[: t1 - t0] = zs[t0:t1]
    return padded, spans, n_rows, np.int32(t1 - t0), tx, ty, tz


def _on(device: jax.Device, args: tuple[Any, ...], place: bool) -> tuple[Any, ...]:
    """``args`` put on ``device`` if ``place``, else as they are (host arrays)."""
    return tuple(jax.device_put(args, device)) if place else args


def _per_call(items: int, capacity: int, devices: Sequence[jax.Device]) -> int:
    """Items per kernel call: all that fit, or a share per device so every device works."""
    return min(capacity, max(1, -(-items // len(devices)))) if len(devices) > 1 else capacity


def _dispatch(
    kernel: Any,
    calls: list[tuple[tuple[Any, ...], int]],
    device: jax.Device,
    devices: Sequence[jax.Device],
    **static: Any,
) -> list[Any]:
    """``kernel(*args, registers=r, **static)`` for each ``(args, r)`` of ``calls``.

    On one device each call is dispatched asynchronously (through the stored executables).
    On several, calls go in batches of one per device: their inputs padded to the batch's
    largest tape, stacked, sharded over a 1-D mesh and run by ``shard_map``.
    """
    if len(devices) < 2:
        # On the default device, host arrays go straight to the kernel: JAX's C++ call
        # path transfers them, which costs less than jax.device_put's Python path (6 % of a
        # 1024² frame; experiments/RESULTS.md). Elsewhere they are placed first.
        place = device != jax.local_devices()[0]
        return [
            _executables.call(kernel, _on(device, args, place), device, registers=r, **static)
            for args, r in calls
        ]
    share = len(devices)
    dispatched = []  # every batch is sent before any is read back, so devices overlap
    for first in range(0, len(calls), share):
        batch = calls[first : first + share]
        real = len(batch)
        batch = pad_to(batch, share)  # idle devices repeat the last call
        longest = max(len(args[0]) for args, _ in batch)
        stacked = jax.tree.map(
            lambda *leaves: np.stack(leaves),
            *[(args[0].padded(longest), *args[1:]) for args, _ in batch],
        )
        run, sharding = _sharded(kernel, tuple(devices), max(r for _, r in batch), **static)
        out = run(*jax.device_put(stacked, sharding))
        dispatched.append((real, out))
    outs: list[Any] = []
    for real, out in dispatched:
        host = jax.tree.map(np.asarray, out)
        outs.extend(jax.tree.map(lambda a, i=i: a[i], host) for i in range(real))
    return outs


@functools.lru_cache(maxsize=16)
def _sharded(
    kernel: Any, devices: tuple[jax.Device, ...], registers: int, **static: Any
) -> tuple[Callable[..., Any], NamedSharding]:
    """``kernel`` on a stack of calls, one per device of a 1-D mesh, and the stack's sharding."""
    sharding, _ = line_mesh(devices, "calls")
    mesh, spec = sharding.mesh, sharding.spec

    body = kernel.__wrapped__  # the kernel's function: XLA options go on the outer jit only

    def one(*stacked: Any) -> Any:
        out = body(*jax.tree.map(lambda a: a[0], stacked), registers=registers, **static)
        return jax.tree.map(lambda a: a[None], out)

    mapped = jax.shard_map(one, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
    return jax.jit(mapped, compiler_options=COMPILER_OPTIONS), sharding


def as_tiles(image: np.ndarray, tile: int) -> np.ndarray:
    """``image`` (``(..., side, side)``) as ``[..., tile row, row, tile col, col]``:
    a view, so writes through it go to ``image``."""
    n = image.shape[-1] // tile
    return image.reshape(*image.shape[:-2], n, tile, n, tile)


def tile_max(image: np.ndarray, tile: int) -> np.ndarray:
    """The largest value of each ``tile × tile`` square of ``image`` (``(..., side,
    side)``): ``(..., side / tile, side / tile)``. Rows are reduced first, across whole
    rows of memory, then the ``tile`` pixels of each square's row (reducing both axes at
    once, NumPy ran a loop of ``tile`` elements per square row: 1024² int32, 2.5 against
    0.5 ms)."""
    n, lead = image.shape[-1] // tile, image.shape[:-2]
    out: np.ndarray
    if n == 1:  # one square: its pixels are one run of memory
        out = image.reshape(*lead, 1, tile * tile).max(axis=-1)[..., None]
    else:
        rows = image.reshape(*lead, n, tile, image.shape[-1]).max(axis=-2)
        out = rows.reshape(*lead, n, n, tile).max(axis=-1)
    return out


def _runs(image: np.ndarray, tile: int) -> np.ndarray:
    """``image`` (2-D, C-contiguous) as ``[tile row, row, tile col]``, each element one
    row of one square (a void of ``tile`` pixels): a view."""
    run = np.dtype((np.void, tile * image.itemsize))
    return image.view(run).reshape(image.shape[0] // tile, tile, image.shape[1] // tile)


def read_tiles(image: np.ndarray, tile: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The ``tile × tile`` squares of ``image`` (2-D) at ``(rows, cols)``
    (pixel corners): ``(squares, tile, tile)``, a copy; a square's row of pixels read as
    one element, as :func:`paint_tiles` writes them."""
    if image.ndim != 2 or not image.flags.c_contiguous:
        return np.array(as_tiles(image, tile)[rows // tile, :, cols // tile, :])
    out: np.ndarray = _runs(image, tile)[rows // tile, :, cols // tile].view(image.dtype)
    return out.reshape(len(rows), tile, tile)


def paint_tiles(
    image: np.ndarray, tile: int, rows: np.ndarray, cols: np.ndarray, value: Any
) -> None:
    """Set the ``tile × tile`` squares at ``(rows, cols)`` (pixel corners) to ``value`` (a
    scalar; or per square a ``tile × tile`` block, or one row of ``tile`` pixels that
    every row of the square repeats: ``(squares, 1, tile)``).

    A square's row of pixels moves as one element (a void of ``tile`` pixels): NumPy's
    indexed assignment pays per element, and this is 3.4× quicker than pixel by pixel for
    the 5,382 leaf tiles of prospero at 4096² (1.3 against 4.3 ms)."""
    if not len(rows):
        return
    if image.ndim != 2 or not image.flags.c_contiguous:
        as_tiles(image, tile)[rows // tile, :, cols // tile, :] = value
        return
    runs = _runs(image, tile)
    run = runs.dtype
    if np.ndim(value) == 0:
        source = np.full(tile, value, image.dtype).view(run)[0]
    else:
        blocks = np.ascontiguousarray(value, image.dtype)
        source = blocks.reshape(len(rows), -1, tile).view(run)[..., 0]  # rows: tile or 1
    runs[rows // tile, :, cols // tile] = source
