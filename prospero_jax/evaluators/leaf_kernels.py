"""The point kernels: tapes evaluated at leaf tiles' and boxes' points, and a heightmap's
columns searched for their first sample inside, in one XLA call for many tapes.

Input: tapes packed as arrays (:class:`~prospero_jax.evaluators.tape.Tapes`, each a
``(start, length)`` span of the call's rows) and each tape's pixel axes and depths.
Output, per kernel:

* :func:`leaf_kernel` (one tape → one square tile of pixels, or a box of them at several
  depths): where the value is < 0, or the value, or each column's first depth inside
  (searched :data:`FIRSTS_CHUNK` depths at a time, :func:`first_depths`), or a
  heightmap's squares of columns lowered to it;
* :func:`split_search_kernel` (one parent tape → its leaf boxes, a heightmap's last
  level): the prune kernel's passes (:func:`~prospero_jax.evaluators.cull.prune_parent`),
  then each box's columns searched as the leaf kernel searches them, on the parent's rows
  the box keeps.

Invariants: a row is dispatched with ``lax.switch`` over the op table's value branches,
each reading its own operands (:func:`~prospero_jax.evaluators.kernel_rows.reading`), so
one compilation serves every program and tile; registers are a 2-D file, one row a
register, carried from tape to tape and never cleared; the values are the op table's
value rules on the tapes' rows, op by op in the tapes' dtype: the brute-force field's, but
for a few ulps where XLA:CPU computes a transcendental function or a float32 division
differently in fused code (:mod:`~prospero_jax.renderers.culled` says where that shows).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prospero_jax.evaluators.cull import PruneRegisters, prune_parent
from prospero_jax.evaluators.kernel_rows import (
    COMPILER_OPTIONS,
    branch_of,
    get_row,
    interval_branches,
    need_branches,
    read_lanes,
    reading,
    row_operands,
    set_row,
    write_lanes,
)
from prospero_jax.evaluators.tape import Tapes, value_branches
from prospero_jax.ir.ops import CONST

#: Pixels of all leaf tiles in one call (1024 tiles of 32 × 32).
LEAF_PIXEL_CAPACITY = 1 << 20
#: The depths a leaf box's column search evaluates at a time (:func:`leaf_kernel`'s
#: ``firsts``): 4 of a 16-deep box, 256 points, stopping once every column is found
#: (colonnade 1024³'s leaves 8, 4, 2: 36, 34, 32 ms against 52 ms all 16 at once;
#: experiments/RESULTS.md).
FIRSTS_CHUNK = 4
#: What :func:`leaf_kernel`'s ``firsts`` with ``offsets`` gives a column with no sample
#: found: int32's largest (a heightmap's "none found yet").
NOT_FOUND = int(np.iinfo(np.int32).max)


def first_depths(
    evaluated: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    regs: jax.Array,
    depths: jax.Array,
    limit: jax.Array,
    chunk: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A leaf box's column search (:func:`leaf_kernel`'s ``firsts``): its value
    (``evaluated(regs, z) → (regs, value)``, at a chunk's points of the box's columns at
    depths ``z``) at its ``depths``, ``chunk`` depths at a time, top down, until each
    column has found a value < 0 or searched its ``limit`` first depths. Returns the
    registers, each column's first depth inside (``len(depths)`` if none found) and the
    chunks evaluated."""
    depth = depths.shape[0]
    column = limit.shape[0]
    Carry = tuple[jax.Array, jax.Array, jax.Array]

    def search(carry: Carry) -> Carry:
        k, regs, first = carry  # depths k * chunk onwards
        z = jnp.repeat(lax.dynamic_slice(depths, (k * chunk,), (chunk,)), column)
        regs, value = evaluated(regs, z)
        below = (value < 0).reshape(chunk, column)  # NaN is not inside
        rank = k * chunk + jnp.arange(chunk, dtype=jnp.int32)[:, None]
        found = jnp.where(below, rank, depth).min(axis=0)  # a min: argmax costs more
        return k + 1, regs, jnp.minimum(first, found)

    def unfinished(carry: Carry) -> jax.Array:
        k, _, first = carry
        return (k * chunk < depth) & jnp.any((first == depth) & (limit > k * chunk))

    begin = (jnp.int32(0), regs, jnp.full(column, depth, jnp.int32))
    chunks, regs, first = lax.while_loop(unfinished, search, begin)
    return regs, first, chunks


@functools.partial(
    jax.jit,
    static_argnames=("registers", "side", "values", "depth", "firsts"),
    compiler_options=COMPILER_OPTIONS,
)
def leaf_kernel(
    tapes: Tapes,
    starts: jax.Array,
    lengths: jax.Array,
    count: jax.Array,
    xs: jax.Array,
    ys: jax.Array,
    zs: jax.Array,
    limits: jax.Array | None = None,
    offsets: jax.Array | None = None,
    none: jax.Array | None = None,
    squares: jax.Array | None = None,
    caps: jax.Array | None = None,
    *,
    registers: int,
    side: int,
    values: bool = False,
    depth: int = 1,
    firsts: bool = False,
) -> jax.Array:
    """Evaluate ``count`` tapes, tape ``t`` on the ``side²`` pixels ``xs[t] × ys[t]`` at
    depth ``zs[t]`` (or, with ``depth`` > 1, on the box of ``depth × side²`` points at the
    depths ``zs[t, k]``: a row step then serves ``depth`` times the points).

    Returns ``inside[t * side² + side * row + col]``: the value at ``(xs[t, col],
    ys[t, row], zs[t])`` is < 0; with ``values``, that value itself (with ``depth``,
    ``inside[(t * depth + k) * side² + side * row + col]`` at ``zs[t, k]``); with
    ``firsts`` (and ``depth``), ``first[t * side² + side * row + col]`` (int32): the least
    ``k`` whose value is < 0 there, ``depth`` if none (a heightmap's leaf box read back as
    one index a column, not ``depth`` signs). ``firsts`` boxes are searched
    :data:`FIRSTS_CHUNK` depths at a time, top down, and a box's search stops once each
    of its columns has found its sample or searched its ``limits[t, side * row + col]``
    first depths (default: all; any int32, unclipped): a column's result is exact below
    its limit, and at or above it either exact or ``depth`` (a heightmap's column already
    lowered to an index in the box needs nothing at or below it: colonnade 1024³'s leaves
    52 → 34 ms, experiments/RESULTS.md). With ``offsets`` (``(tiles,)`` int32) and
    ``none``, a found ``k`` comes back as ``k + offsets[t]`` and ``depth`` as ``none``:
    a heightmap's sample index, or :data:`NOT_FOUND` (on the host, a pass over every
    column: colonnade 1024³'s 1.4 M, ~2 ms).

    With ``squares`` (``(tiles,)`` int32, and ``offsets``, ``caps``), the boxes lower a
    heightmap's columns in the kernel: ``limits`` holds, per square of columns, each
    column's first sample known inside (``(squares, side²)``, sample indices:
    :data:`NOT_FOUND` none, -1 never to search), box ``t`` lies on square
    ``squares[t]`` from sample ``offsets[t]`` on, and needs only its ``caps[t]`` first
    depths searched (1 for a box whose value is the same at every depth). Boxes are taken
    in order (a square's top down): each searches its columns above what is known and
    within its cap, as with ``limits`` above (exact within, exact or nothing beyond), and
    lowers them to what it finds, so a box below what an earlier one of the call found
    searches nothing. Returns the squares' lowered ``limits``
    (``(squares · side²,)``): one read and one write a square on the host, not a box's
    limits, indices and lowering (colonnade 1024³: ~7 ms a frame of lowering by layers).
    """
    ops, args, consts, params = tapes
    column = side * side
    chunk = FIRSTS_CHUNK if firsts and depth % FIRSTS_CHUNK == 0 else depth
    px = column * (chunk if firsts else depth)
    value_rules = reading(value_branches(params), get_row, lambda c: jnp.full(px, c))
    tiles = starts.shape[0]

    def evaluated(
        regs: jax.Array, start: jax.Array, n: jax.Array, x: jax.Array, y: jax.Array, z: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The registers after tape ``ops[start : start + n]`` at the ``px`` points, and
        its value there."""

        def step(i: jax.Array, regs: jax.Array) -> jax.Array:
            op, c = ops[start + i], consts[start + i]
            a, b, imm_a, imm_b = row_operands(args[start + i])
            v = lax.switch(branch_of(op, imm_a, imm_b), value_rules, regs, a, b, c, x, y, z)
            return set_row(regs, i, v)

        regs = lax.fori_loop(0, n, step, regs)
        return regs, get_row(regs, n - 1)

    def tile(t: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        regs, out = state  # registers carried across tiles, never cleared (see above)
        start, n = starts[t], lengths[t]
        if depth == 1:
            regs, value = evaluated(
                regs, start, n, jnp.tile(xs[t], side), jnp.repeat(ys[t], side), zs[t]
            )
            return regs, write_lanes(out, t, value if values else value < 0, px)
        x = jnp.tile(xs[t], side * px // column)
        y = jnp.tile(jnp.repeat(ys[t], side), px // column)
        if not firsts:
            regs, value = evaluated(regs, start, n, x, y, jnp.repeat(zs[t], column))
            return regs, write_lanes(out, t, value if values else value < 0, px)
        if squares is None:
            limit = jnp.full(column, depth, jnp.int32) if limits is None else limits[t]
        else:  # what the box's square knows: depths below it need no search
            assert offsets is not None
            assert caps is not None
            known = get_row(out, squares[t])
            limit = jnp.minimum(known - offsets[t], caps[t])

        regs, first, _ = first_depths(
            lambda regs, z: evaluated(regs, start, n, x, y, z), regs, zs[t], limit, chunk
        )
        if offsets is not None and none is not None:
            first = jnp.where(first < depth, first + offsets[t], none)
        if squares is not None:
            return regs, set_row(out, squares[t], jnp.minimum(known, first))
        return regs, write_lanes(out, t, first, column)

    kind = jnp.int32 if firsts else consts.dtype if values else bool
    if squares is not None and limits is not None:
        out = limits  # lowered in place, a square a row
    else:
        out = jnp.zeros(tiles * (column if firsts else px), kind)
    state = (jnp.zeros((registers, px), consts.dtype), out)
    inside: jax.Array = lax.fori_loop(0, count, tile, state)[1]
    return inside.reshape(-1)


@functools.partial(
    jax.jit, static_argnames=("registers", "side", "split"), compiler_options=COMPILER_OPTIONS
)
def split_search_kernel(
    tapes: Tapes,
    starts: jax.Array,
    lengths: jax.Array,
    count: jax.Array,
    boxes: jax.Array,
    xs: jax.Array,
    ys: jax.Array,
    zs: jax.Array,
    tops: jax.Array,
    squares: jax.Array,
    known: jax.Array,
    z_reads: jax.Array,
    *,
    registers: int,
    side: int,
    split: tuple[int, int],
) -> tuple[jax.Array, jax.Array]:
    """A heightmap's last level and its leaf boxes in one call: ``count`` parent tapes
    (``tapes``' rows ``starts[g]`` on, ``lengths[g]`` of them, at most ``registers``)
    pruned over their leaf boxes as :func:`prune_kernel` prunes them (``split = (k,
    kz)``: ``k × k × kz`` boxes of ``side²`` columns, lane-ordered ``(z, row, column)``;
    ``boxes[g]`` their bounds), then the boxes' columns searched as :func:`leaf_kernel`'s
    ``squares`` search them: the same values, with no round trip to the host between
    (the children's tapes gathered, the boxes behind what is found dropped, the leaf
    calls' arguments: the colonnade's frames at 512³ and 1024³ take 0.76–0.83× as long;
    experiments/RESULTS.md).

    Parent ``g``'s columns lie at ``xs[g]``, ``ys[g]`` (``k · side`` each), its samples at
    ``zs[g]`` (``kz`` boxes' depths, top first), the first of them sample ``tops[g]``.
    ``known`` (``(squares, side²)``) holds each square of columns' first sample known
    inside (``NOT_FOUND``: none, -1: never to search), child ``j`` of parent ``g`` lying
    on square ``squares[g, j]``. Parents are taken in order (a square's top down), their
    children lane by lane, and those of a square still open (a column above the child's
    top not known inside): a child proved inside lowers its square to its top sample; an
    ambiguous one evaluates its parent's rows that its pruned tape keeps (the others
    skipped: no tape is gathered; the same rows, operands and constants as the tape
    :func:`prune_kernel`'s outputs give it), searching each column above what is known,
    all its samples if a row it keeps reads z (``z_reads``, per row of ``tapes``), else
    the first chunk, and lowers the square to what it finds.

    Returns ``known`` lowered (``(squares · side²,)``) and the counts of children proved
    inside, left ambiguous and searched (ambiguous and open), the searched ones' rows and
    the chunks of depths they evaluated."""
    k, kz = split
    lanes, column = k * k * kz, side * side
    depth = zs.shape[1] // kz
    chunk = FIRSTS_CHUNK if depth % FIRSTS_CHUNK == 0 else depth
    dtype = tapes.consts.dtype
    full = lambda c: jnp.full(column * chunk, c)  # noqa: E731
    skipped = [lambda *_: jnp.zeros(column * chunk, dtype)]  # a row the child drops
    value_rules = reading(value_branches(tapes.params), get_row, full) + skipped
    rules = (interval_branches(lanes, tapes.params), need_branches(lanes))
    lane_z, lane_row, lane_col = (
        jnp.asarray(a, jnp.int32) for a in np.unravel_index(np.arange(lanes), (kz, k, k))
    )
    iota = jnp.arange(lanes, dtype=jnp.int32)

    def parent(g: jax.Array, state: tuple[Any, ...]) -> tuple[Any, ...]:
        pruning, rows_out, regs, known, tally = state
        start, n = starts[g], lengths[g]
        pruning, (_, _, inside, kept), rows_out = prune_parent(
            tapes, start, n, boxes[g], pruning, rows_out, 0, rules, compact=False
        )
        emit, new_a, new_b = rows_out

        def z_read(i: jax.Array, reads: jax.Array) -> jax.Array:  # a child's rows read z
            return reads | ((read_lanes(emit, i, lanes) == 1) & z_reads[start + i])

        reads = lax.fori_loop(0, n, z_read, jnp.zeros(lanes, bool))
        top = tops[g] + depth * lane_z  # each child's first sample
        square = squares[g]
        root = read_lanes(pruning.stand_in, n - 1, lanes)  # the row holding each child's value

        def evaluated(
            lane: jax.Array, regs: jax.Array, point: tuple[jax.Array, ...]
        ) -> tuple[jax.Array, jax.Array]:
            """Child ``lane``'s value at ``point``: the parent's rows it keeps."""

            def step(i: jax.Array, regs: jax.Array) -> jax.Array:
                at, row = i * lanes + lane, start + i
                a, b, imm_a, imm_b = row_operands(jnp.stack([new_a[at], new_b[at]]))
                kind = branch_of(tapes.ops[row], imm_a, imm_b)
                e = emit[at]  # 0: dropped, 2: a const row (a min or max's immediate)
                kind = jnp.where(e == 0, len(value_rules) - 1, jnp.where(e == 2, CONST, kind))
                c = tapes.consts[row]
                return set_row(regs, i, lax.switch(kind, value_rules, regs, a, b, c, *point))

            regs = lax.fori_loop(0, n, step, regs)
            return regs, get_row(regs, root[lane])

        Visit = tuple[jax.Array, jax.Array, jax.Array, jax.Array]

        def visit(state: Visit) -> Visit:
            """The first child left: its square lowered to its top if it is inside,
            else to what its search finds."""
            left, regs, known, chunks = state
            lane = jnp.argmax(left).astype(jnp.int32)
            x = lax.dynamic_slice(xs[g], (side * lane_col[lane],), (side,))
            y = lax.dynamic_slice(ys[g], (side * lane_row[lane],), (side,))
            x, y = jnp.tile(x, side * chunk), jnp.tile(jnp.repeat(y, side), chunk)
            depths = lax.dynamic_slice(zs[g], (depth * lane_z[lane],), (depth,))
            # One read of the square, used only by the search and its update: a second
            # read would make XLA copy ``known`` every step.
            sample, where = top[lane], square[lane]
            above = get_row(known, where)
            cap = jnp.where(inside[lane], 0, jnp.where(reads[lane], depth, 1))
            limit = jnp.minimum(above - sample, cap)
            regs, first, more = first_depths(
                lambda regs, z: evaluated(lane, regs, (x, y, z)), regs, depths, limit, chunk
            )
            first = jnp.where(first < depth, first + sample, NOT_FOUND)
            first = jnp.where(inside[lane], sample, first)
            known = set_row(known, where, jnp.minimum(above, first))
            return left & (iota != lane), regs, known, chunks + more

        # Children whose columns all know a sample inside above their top are left alone
        # (colonnade 512³ frames 0.98×).
        open_ = known[square].max(axis=1) > top
        begin = ((inside | (kept > 0)) & open_, regs, known, jnp.int32(0))
        _, regs, known, chunks = lax.while_loop(lambda state: jnp.any(state[0]), visit, begin)
        searched = (kept > 0) & open_
        rows = jnp.where(searched, kept, 0).sum()
        counts = jnp.stack([inside.sum(), (kept > 0).sum(), searched.sum(), rows, chunks])
        return pruning, rows_out, regs, known, tally + counts.astype(jnp.int32)

    size = registers * lanes
    int_rows = jnp.zeros(size, jnp.int32)
    pruning = PruneRegisters(
        jnp.zeros(size, dtype), jnp.zeros(size, dtype), int_rows, int_rows, int_rows, int_rows
    )
    rows_out = (jnp.zeros(size, jnp.int8), int_rows, int_rows)
    regs = jnp.zeros((registers, column * chunk), dtype)
    state = (pruning, rows_out, regs, known, jnp.zeros(5, jnp.int32))
    *_, known, tally = lax.fori_loop(0, count, parent, state)
    return known.reshape(-1), tally
