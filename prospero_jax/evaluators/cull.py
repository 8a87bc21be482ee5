"""The prune kernel: a parent tape evaluated on intervals over its child boxes, and each
child's pruned tape, in one XLA call for many parents.

Input: parent tapes packed as arrays (:class:`~prospero_jax.evaluators.tape.Tapes`, each
a ``(start, length)`` span of the call's rows) and each parent's child boxes (``[xlo,
xhi, ylo, yhi, zlo, zhi] × lanes``, one lane a child: 4, 16 or 64 children for a 2 × 2,
4 × 4 or 8 × 8 split).
Output (:func:`prune_kernel`, :class:`PruneOutputs`): for each child box, the interval
of the tape's value, whether it is proved inside, and its pruned tape: each
``min``/``max`` that the intervals decide is replaced by the chosen argument, each one
that the root's sign test sees through (passing it on through ``min``, ``max`` and,
flipped, ``neg``) is replaced by the argument that decides the sign, and every row the
value no longer needs is dropped (the rows kept, and their operands renumbered).

The kernel makes four passes over a parent tape (:func:`prune_parent`, which the split
search of :mod:`~prospero_jax.evaluators.leaf_kernels` shares): forward (intervals and
interval-decided choices), backward (what each row's users need of it: nothing, whether
it is < 0, whether it is > 0, or its value; sign choices), forward (each row's index in
the child tape, or the index of the row standing for it) and forward (kept rows'
operands: in a pass of their own, as :mod:`~prospero_jax.evaluators.kernel_rows`'s
in-place rule asks).

Invariants: rows are dispatched with ``lax.switch`` over branches built from the op
table (:mod:`~prospero_jax.evaluators.kernel_rows`), so one compilation serves every
program, tile and level, and JAX's persistent cache keeps it across processes; registers
are carried from parent to parent, never cleared.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax import lax

from prospero_jax.evaluators.kernel_rows import (
    COMPILER_OPTIONS,
    LESS,
    NEED_CLASS,
    NONE,
    interval_branches,
    need_branches,
    operand_intervals,
    read_lanes,
    row_operands,
    write_lanes,
)
from prospero_jax.evaluators.tape import ARITY, Tapes

#: Children per parent in a 2 × 2 split (a kernel's lanes are its boxes' last axis: 4, 16
#: or 64 children for a 2 × 2, 4 × 4 or 8 × 8 split).
CHILDREN = 4
#: Buffer capacities of one prune call, in row × lane and group × lane entries (a 2 × 2
#: split: 65,536 rows of all tapes and 4,096 parents). A call whose
#: rows fit in ``SMALL_ROW_CAPACITY`` entries takes that shape instead: a call zeroes its
#: buffers, and with a quarter of them prospero's 1024² frame takes ~5 % less
#: (experiments/call_shapes.py); levels with more rows (solids') keep the larger calls,
#: fewer of them (a small shape for every call cost the bear's heightmap 6-9 %).
ROW_CAPACITY = 1 << 18
SMALL_ROW_CAPACITY = 1 << 16
GROUP_CAPACITY = 1 << 14


class PruneRegisters(NamedTuple):
    """Per-row state of the tape being pruned, 4 lanes (children) a row: the interval
    ``lo``/``hi``, the interval ``choice`` of a min/max, what users ``need`` of the row,
    its ``codes`` (need + sign choice × 8) and the child-tape row standing for it
    (``stand_in``). Carried from tape to tape, never cleared."""

    lo: jax.Array
    hi: jax.Array
    choice: jax.Array
    need: jax.Array
    codes: jax.Array
    stand_in: jax.Array


class PruneOutputs(NamedTuple):
    """What :func:`prune_kernel` returns: per child, its value's interval, whether it is
    painted inside and its pruned tape's length; per parent row and child, whether the row
    is kept (``emit``) and its operands in the child's tape."""

    root_lo: jax.Array
    root_hi: jax.Array
    painted: jax.Array
    kept: jax.Array
    emit: jax.Array
    new_a: jax.Array
    new_b: jax.Array


def prune_parent(
    tapes: Tapes,
    start: jax.Array,
    n: jax.Array,
    box: jax.Array,
    regs: PruneRegisters,
    rows_out: tuple[jax.Array, jax.Array, jax.Array],
    base: jax.Array | int,
    rules: tuple[list[Callable[..., Any]], list[Callable[..., Any]]],
    *,
    prune: bool = True,
    compact: bool = True,
) -> tuple[PruneRegisters, tuple[jax.Array, ...], tuple[jax.Array, jax.Array, jax.Array]]:
    """One parent tape (rows ``start`` to ``start + n``) interval-evaluated and pruned over
    its child boxes ``box`` (``(6, lanes)``), as :func:`prune_kernel` does for each parent:
    the registers after it; per child its interval ``lo``, ``hi``, whether it is inside
    and its pruned tape's length (``prune=False``: 1 if ambiguous); and ``rows_out``
    (``emit``, ``new_a``, ``new_b``, flat ``row · lanes + lane``) with the parent's row
    ``i`` written at row ``base + i`` (left as they are with ``prune=False``). With
    ``compact=False``, the operands are the parent's rows that stand for them (a child
    evaluated on its parent's rows, those it does not emit skipped), not rows of the
    child's own tape."""
    ops, args, consts, _ = tapes
    interval_rules, need_rules = rules
    k4 = box.shape[1]
    need_class = jnp.asarray(NEED_CLASS)
    arity = jnp.asarray(ARITY)
    lo, hi, choice, need, codes, stand_in = regs
    emit, new_a, new_b = rows_out

    def forward(i: jax.Array, regs: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        lo, hi, choice, need = regs
        op, c = ops[start + i], consts[start + i]
        a, b, imm_a, imm_b = row_operands(args[start + i])
        ia, ib = operand_intervals(lo, hi, a, b, imm_a, imm_b, c, k4)
        low, high, ch = lax.switch(op, interval_rules, ia, ib, c, box)
        return (
            write_lanes(lo, i, low, k4),
            write_lanes(hi, i, high, k4),
            write_lanes(choice, i, ch, k4),
            write_lanes(need, i, jnp.zeros(k4, jnp.int32), k4),
        )

    lo, hi, choice, need = lax.fori_loop(0, n, forward, (lo, hi, choice, need))
    r = n - 1
    rlo, rhi = read_lanes(lo, r, k4), read_lanes(hi, r, k4)
    inside = rhi < 0
    ambiguous = ~inside & ~(rlo >= 0)  # NaN bounds are ambiguous too
    need = write_lanes(need, r, jnp.where(ambiguous, LESS, NONE), k4)
    if not prune:
        registers = PruneRegisters(lo, hi, choice, need, codes, stand_in)
        return registers, (rlo, rhi, inside, ambiguous.astype(jnp.int32)), rows_out

    def backward(j: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, ...]:
        need, codes = state
        i = r - j
        op, c = ops[start + i], consts[start + i]
        a, b, imm_a, imm_b = row_operands(args[start + i])
        # All reads go into the switch and its results into the updates: with no read
        # of `need` between its two updates, XLA updates it in place.
        reads = (
            (lo, hi, a, b, c),
            read_lanes(need, i, k4),
            read_lanes(choice, i, k4),
            read_lanes(need, a, k4),
            read_lanes(need, b, k4),
            a == b,
            imm_a,
            imm_b,
        )
        need_a, need_b, code = lax.switch(need_class[op], need_rules, *reads)
        need = write_lanes(write_lanes(need, a, need_a, k4), b, need_b, k4)
        return need, write_lanes(codes, i, code, k4)

    need, codes = lax.fori_loop(0, n, backward, (need, codes))

    def renumber(i: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        count, stand_in, emit = state
        a, b, imm_a, imm_b = row_operands(args[start + i])
        code, ch = read_lanes(codes, i, k4), read_lanes(choice, i, k4)
        ch = jnp.where(ch != 0, ch, code >> 3)  # interval choice, else sign choice
        # A row replaced by its immediate becomes a `const` row (emit code 2).
        to_constant = ((ch == 1) & imm_a) | ((ch == 2) & imm_b)
        stays = (ch == 0) | to_constant
        e = ((code & 7) != NONE) & stays
        # stand_in[i]: the child-tape index that stands for row i: its own new index if
        # kept, its choice's stand_in if replaced (operands' stand-ins are final already).
        stand_in_a, stand_in_b = read_lanes(stand_in, a, k4), read_lanes(stand_in, b, k4)
        own = count if compact else jnp.broadcast_to(i, (k4,))
        mine = jnp.where(stays, own, jnp.where(ch == 1, stand_in_a, stand_in_b))
        return (
            count + e.astype(jnp.int32),
            write_lanes(stand_in, i, mine, k4),
            write_lanes(emit, base + i, e * (1 + to_constant), k4),
        )

    zero = jnp.zeros(k4, jnp.int32)
    total, stand_in, emit = lax.fori_loop(0, n, renumber, (zero, stand_in, emit))

    # The kept rows' operands, in a pass of their own: reading `stand_in` in the loop
    # that writes it, for a third buffer, made XLA copy it every step.
    def operands(i: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, ...]:
        new_a, new_b = state
        row = start + i
        op, a, b = ops[row], args[row, 0], args[row, 1]
        ar = arity[op]

        def renumbered(index: jax.Array, used: jax.Array) -> jax.Array:
            moved = read_lanes(stand_in, jnp.maximum(index, 0), k4)
            return jnp.where(used, jnp.where(index < 0, index, moved), 0)

        return (
            write_lanes(new_a, base + i, renumbered(a, ar >= 1), k4),
            write_lanes(new_b, base + i, renumbered(b, ar >= 2), k4),
        )

    new_a, new_b = lax.fori_loop(0, n, operands, (new_a, new_b))
    registers = PruneRegisters(lo, hi, choice, need, codes, stand_in)
    return registers, (rlo, rhi, inside, total), (emit, new_a, new_b)


@functools.partial(
    jax.jit, static_argnames=("registers", "prune"), compiler_options=COMPILER_OPTIONS
)
def prune_kernel(
    tapes: Tapes,
    starts: jax.Array,
    lengths: jax.Array,
    count: jax.Array,
    boxes: jax.Array,
    *,
    registers: int,
    prune: bool = True,
) -> PruneOutputs:
    """Interval-evaluate and prune ``count`` parent tapes over their ``K`` child boxes each.

    ``boxes[g]`` is ``[xlo, xhi, ylo, yhi, zlo, zhi] × K children`` (``K =
    boxes.shape[2]``, the kernel's lanes; a 2-D render's ``zlo = zhi = z``). Returns, per
    child ``g * K + k``: ``lo``, ``hi`` (the value's interval), ``inside`` (``hi < 0``,
    decided here, with XLA's treatment of subnormals, like the point evaluators' ``value
    < 0``) and ``kept`` (its pruned tape's length, 0
    unless the interval straddles 0 or is NaN); per parent row ``r * K + k``: ``emit``
    (0: row r is not in child k's tape; 1: it is; 2: it is, as a ``const`` row holding
    its immediate, which the row's min or max always returns) and ``new_a``, ``new_b``
    (its operands there: indices, or :data:`~prospero_jax.evaluators.tape.IMMEDIATE`).

    ``prune=False``: intervals only, for children whose tapes nobody reads (a heightmap's
    leaves on the compiled tier): the forward pass alone, ``kept`` 1 where a child is
    ambiguous and ``emit``, ``new_a``, ``new_b`` left 0 (the other three passes cost more
    than half of a level's call: experiments/RESULTS.md).
    """
    dtype = tapes.consts.dtype
    k4 = boxes.shape[2]  # children per parent: the lanes
    rules = (interval_branches(k4, tapes.params), need_branches(k4))
    rows = tapes.ops.shape[0]
    groups = starts.shape[0]

    # Registers are carried from group to group without clearing: every register a row
    # reads was written earlier in the same group (operands precede their users).
    size = registers * k4

    def group(
        g: jax.Array, state: tuple[PruneRegisters, PruneOutputs]
    ) -> tuple[PruneRegisters, PruneOutputs]:
        regs, out = state
        root_lo, root_hi, painted, kept, emit, new_a, new_b = out
        start = starts[g]
        regs, (rlo, rhi, inside, total), rows_out = prune_parent(
            tapes, start, lengths[g], boxes[g], regs, (emit, new_a, new_b), start, rules,
            prune=prune,
        )  # fmt: skip
        return regs, PruneOutputs(
            write_lanes(root_lo, g, rlo, k4),
            write_lanes(root_hi, g, rhi, k4),
            write_lanes(painted, g, inside, k4),
            write_lanes(kept, g, total, k4),
            *rows_out,
        )

    int_rows = jnp.zeros(size, jnp.int32)
    registers_in = PruneRegisters(
        jnp.zeros(size, dtype), jnp.zeros(size, dtype), int_rows, int_rows, int_rows, int_rows
    )
    outputs_in = PruneOutputs(
        jnp.zeros(groups * k4, dtype),
        jnp.zeros(groups * k4, dtype),
        jnp.zeros(groups * k4, bool),
        jnp.zeros(groups * k4, jnp.int32),
        jnp.zeros(rows * k4, jnp.int8),
        jnp.zeros(rows * k4, jnp.int32),
        jnp.zeros(rows * k4, jnp.int32),
    )
    _, outputs = lax.fori_loop(0, count, group, (registers_in, outputs_in))
    return cast(PruneOutputs, outputs)
