"""The culling hierarchy's parts: prune levels over tiles or boxes and the leaf pass, as
kernel calls made from the host (or, on the host tier, in NumPy).

Input: a Program (packed once as the root tape, constants folded in as immediates), boxes
of pixel-centre coordinates (``[xlo, xhi, ylo, yhi, zlo, zhi]``, a 2-D image's with
``zlo = zhi = z``) and a :class:`~prospero_jax.renderers.view.Target`.
Output: :func:`prune_level` prunes a level's parent tapes over their children's boxes
(intervals, inside, each child's pruned tape), :func:`next_tapes` gathers the children's
tapes, :func:`leaf_pixels` evaluates leaf tiles at given depths and :func:`tile_duals`
tapes' values and gradients at their own points; :func:`tier` picks the kernels or the
host tier. The one walk over them is :func:`~prospero_jax.renderers.octree.walk`, boxes
in x, y and z, front to back: the 2-D renderer (:mod:`prospero_jax.renderers.culled`)
is its z-fixed case, the heightmaps and the mesher (its leaves' columns searched by
:mod:`~prospero_jax.renderers.column_search`) its solid one; the normals
(:mod:`~prospero_jax.renderers.gradients`) prune tapes over image tiles with the same
levels. The calls' arguments are packed and dispatched by
:mod:`~prospero_jax.renderers.kernel_calls`.

How a level runs: each parent tile splits k × k (:func:`splits`, :data:`SPLIT`; a box
``kz`` in z too); the parents' tapes go to
:func:`~prospero_jax.evaluators.cull.prune_kernel` in as few calls as fit its fixed
capacities (a lane per child box), and host NumPy gathers each ambiguous child's kept rows
into the next level's tapes (vectorized over all tiles). A frame's kernels are compiled at
once before its first level (:func:`_kernels`, :func:`prospero_jax.runtime.executables.
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
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from prospero_jax.evaluators import host_cull as _host
from prospero_jax.evaluators.cull import (
    GROUP_CAPACITY,
    ROW_CAPACITY,
    SMALL_ROW_CAPACITY,
    prune_kernel,
)
from prospero_jax.evaluators.dual_kernel import dual_leaf_kernel
from prospero_jax.evaluators.leaf_kernels import (
    LEAF_PIXEL_CAPACITY,
    leaf_kernel,
)
from prospero_jax.evaluators.tape import Pruned, Tapes, register_capacity, run_rows
from prospero_jax.ir import passes as _passes
from prospero_jax.ir.ops import CONST, PARAMS
from prospero_jax.ir.program import Program
from prospero_jax.renderers.kernel_calls import (
    LEAF_ROW_CAPACITY,
    call_args,
    call_spans,
    dispatch,
    items_per_call,
    joined,
    leaf_calls,
)
from prospero_jax.renderers.view import Target
from prospero_jax.runtime import executables as _executables
from prospero_jax.runtime.memory import aligned_empty, aligned_zeros

#: Side of the tiles evaluated point by point (see experiments/RESULTS.md for the choice).
LEAF_SIDE = 32
#: How the root, then every other level, splits its tiles (k: k × k children).
SPLIT = (4, 4)
#: Depth samples (heightmaps) or grid cells (meshes) per slab of a 3-D sweep along z.
SLAB = 16
#: Rows of leaf tapes the host tier evaluates together (a byte a pixel: 2 MiB at 32 px).
HOST_LEAF_ROWS = 2048
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


def pay_rent(seconds: float) -> None:
    """Count ``seconds`` of host-tier work towards the price of readying the kernels
    (:func:`tier`)."""
    _rent["seconds"] += seconds


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
    return joined(parts).reshape(tiles, count, side, side)


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
        calls = leaf_calls(
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
        for g0, g1 in call_spans(per_tile, HOST_LEAF_ROWS, tiles):  # values stay in cache
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
    calls = leaf_calls(
        tapes, lengths, front.rows[order], front.cols[order], xs, ys, zs, target.device,
        side, target.devices, values=values,
    )  # fmt: skip
    if count == 1:
        for first, out in calls:
            yield first, out.reshape(-1, 1, side, side)
    else:  # a call may end inside a tile's depths: one part
        yield 0, joined([out for _, out in calls]).reshape(tiles, count, side, side)


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
    derivatives in x, y and z (:func:`~prospero_jax.evaluators.dual_kernel.dual_leaf_kernel`, on
    the target's device). With ``where`` (``(tapes, n)`` bool) and ``turn`` (a 3 × 3
    matrix in the target's dtype, or None), the gradients turned and made unit length in
    the kernel instead, NaN where ``where`` is False: ``(tapes, n, 3)``."""
    n = points.shape[2]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    capacity = dual_call_groups(n)
    calls, spans = [], []
    for t0, t1 in call_spans(lengths, LEAF_ROW_CAPACITY, capacity):
        padded, spans_, n_rows, _ = call_args(
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
    outs = dispatch(dual_leaf_kernel, calls, target.device, ())  # as the leaf pass does
    if where is not None:
        return joined(
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
    ``depth``, as :func:`~prospero_jax.renderers.column_search.lower_firsts` calls it);
    ``atoms``: the rows of the atoms' table."""

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
    for g0, g1 in call_spans(lengths, max_rows, items_per_call(len(lengths), max_groups, devices)):
        rows = int(starts[g1 - 1] + lengths[g1 - 1] - starts[g0])
        padded, spans, counts, n_rows = call_args(
            tapes, starts, lengths, g0, g1, _call_rows(rows, lanes), max_groups
        )
        box = aligned_zeros((max_groups, 6, lanes), boxes.dtype)
        box[: g1 - g0] = boxes[g0:g1]
        calls.append(((padded, spans, counts, np.int32(g1 - g0), box), registers))
        sizes.append((g1 - g0, n_rows))
    static = {} if prune else {"prune": False}
    outs = dispatch(prune_kernel, calls, device, devices, **static)  # dispatched; read below
    parts: list[list[np.ndarray]] = [[] for _ in Pruned._fields]
    for (n_groups, n_rows), out in zip(sizes, outs, strict=True):
        for k, values in enumerate(out if prune else out[:4]):
            size = (n_groups if k < 4 else n_rows) * lanes  # per child, then per row
            parts[k].append(np.asarray(values)[:size])
    if not prune:
        parts[4:] = [[np.zeros(0, dtype)] for dtype in (np.int8, np.int32, np.int32)]
    lo, hi, inside, kept, emit, new_a, new_b = map(joined, parts)
    lo, hi, inside, kept = (v.reshape(-1, lanes) for v in (lo, hi, inside, kept))
    return Pruned(lo, hi, inside, kept, emit, new_a, new_b)
