"""Tape interpreter kernels: tapes as data, so compile cost does not grow with the tape.

Input: tapes packed as arrays (:class:`~prospero_jax.evaluators.tape.Tapes`: opcode, two
operand indices local to the tape, and a constant per row; many tapes concatenated, each a
``(start, length)`` span).
Output, per kernel:

* :func:`prune_kernel` (one parent tape → its k × k children, one lane each): for each
  child box, the
  interval of the tape's value, and the child's pruned tape: each ``min``/``max`` that
  the intervals decide is replaced by the chosen argument, each one that the root's sign
  test sees through (passing it on through ``min``, ``max`` and, flipped, ``neg``) is
  replaced by the argument that decides the sign, and every row
  the value no longer needs is dropped (the rows kept, and their operands renumbered);
* :func:`leaf_kernel` (one tape → one square tile of pixels, or a box of them at several
  depths): where the value is < 0 (or the value, or each column's first depth inside);
* :func:`split_search_kernel` (one parent tape → its leaf boxes, a heightmap's last
  level): the prune kernel's passes, then each box's columns searched as the leaf kernel
  searches them, on the parent's rows the box keeps;
* :func:`dual_leaf_kernel` (one tape → its own points): value and gradient by dual
  numbers (the tapes must be pruned for values, not signs: see
  :func:`prospero_jax.renderers.gradients.grouped_gradients`).

An operand is a register or, marked :data:`~prospero_jax.evaluators.tape.IMMEDIATE`, the
row's constant: the prune kernel gives an immediate the interval ``[c, c]`` and passes it
no need, and turns a ``min``/``max`` decided for its immediate into a ``const`` row; the
leaf kernel has a branch per opcode and immediate side (:func:`_reading`), whose operand
reads XLA fuses into the op (a 1,024-pixel read before the switch is a copy: a third of
the leaves' time).

Both loop over tapes and, inside, over the rows of one tape, dispatching each row with
``lax.switch`` over branches built from the op table (interval, need or value rules, by
:func:`~prospero_jax.evaluators.tape.branches`), so
their compiled code depends only on the op table, the buffer capacities and the dtype,
never on a program: one compilation serves every program, tile and level, and JAX's
persistent cache keeps it across processes.

The prune kernel makes four passes over a parent tape: forward (intervals and
interval-decided choices), backward (what each row's users need of it: nothing, whether
it is < 0, whether it is > 0, or its value; sign choices), forward (each row's index in
the child tape, or the index of the row standing for it) and forward (kept rows'
operands).

Registers are carried from tape to tape without clearing (a row only reads registers
written earlier in its own tape): the prune kernel's are flat 1-D buffers indexed ``row *
lanes + lane``; the leaf kernels' a 2-D file, one row a register (``(rows, lanes)``, the
dual kernel's ``(rows, 4, lanes)``), read whole (a flat file's row read as a slice and
split, value from tangents, ran the dual kernel ~4× slower per lane). Both are updated
with ``dynamic_update_slice``, which XLA:CPU does in place inside a loop, on one
condition found in the compiled HLO: no fusion other than a buffer's own update may read
it in the same step. Otherwise XLA copies the whole buffer every step (a 5-50× slowdown).
So every pass reads its registers into a ``lax.switch`` (whose operands are materialized)
or into values used only by the update, and a buffer that one pass both reads and writes
is written by no other output in that pass; the operands pass exists for that reason.
``XLA_FLAGS`` gets ``xla_cpu_small_while_loop_byte_threshold`` raised at import (see
:mod:`prospero_jax.runtime.xla`), which compiles each loop into one kernel instead of one
runtime call per iteration (5× faster, ``experiments/RESULTS.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prospero_jax.evaluators.scan import dual_branches
from prospero_jax.evaluators.tape import ARITY, IMMEDIATE, Tapes, branches, value_branches
from prospero_jax.ir.ops import CONST, OPS, VAR_X, VAR_Y, VAR_Z, Op, interval_step

#: Children per parent in a 2 × 2 split (a kernel's lanes are its boxes' last axis: 4, 16
#: or 64 children for a 2 × 2, 4 × 4 or 8 × 8 split).
CHILDREN = 4
#: Buffer capacities of one kernel call, in row × lane and group × lane entries (a 2 × 2
#: split: 65,536 rows of all tapes and 4,096 parents), and leaf pixels. A prune call whose
#: rows fit in ``SMALL_ROW_CAPACITY`` entries takes that shape instead: a call zeroes its
#: buffers, and with a quarter of them prospero's 1024² frame takes ~5 % less
#: (experiments/call_shapes.py); levels with more rows (solids') keep the larger calls,
#: fewer of them (a small shape for every call cost the bear's heightmap 6-9 %).
ROW_CAPACITY = 1 << 18
SMALL_ROW_CAPACITY = 1 << 16
GROUP_CAPACITY = 1 << 14
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
#: The kernels' XLA options: LLVM's level-1 optimizations compile them about a quarter
#: faster than level 3 and run them as fast (experiments/RESULTS.md).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
#: What a row's users need of it, as bits: nothing, whether it is < 0, whether it is > 0,
#: its value. Needs merge by OR; anything but exactly LESS or GREATER counts as VALUE.
NONE, LESS, GREATER, VALUE = 0, 1, 2, 4


def _read(buffer: jax.Array, row: jax.Array, lanes: int) -> jax.Array:
    return lax.dynamic_slice(buffer, (row * lanes,), (lanes,))


def _write(buffer: jax.Array, row: jax.Array, value: jax.Array, lanes: int) -> jax.Array:
    return lax.dynamic_update_slice(buffer, value.astype(buffer.dtype), (row * lanes,))


def _row(registers: jax.Array, row: jax.Array) -> jax.Array:
    """Row ``row`` of a 2-D register file ``(rows, ...)``."""
    value: jax.Array = lax.dynamic_index_in_dim(registers, row, keepdims=False)
    return value


def _set_row(registers: jax.Array, row: jax.Array, value: jax.Array) -> jax.Array:
    """``registers`` with row ``row`` set to ``value``, in place."""
    updated: jax.Array = lax.dynamic_update_index_in_dim(
        registers, value.astype(registers.dtype), row, 0
    )
    return updated


def _interval_branches(lanes: int, params: Any) -> list[Callable[..., Any]]:
    """One branch per opcode: ``(a, b, const, box) → (lo, hi, choice)``, one lane a box
    (``box``: ``[xlo, xhi, ylo, yhi, zlo, zhi] × lanes``; an atom's ``const``: its row of
    ``params``)."""
    keep = jnp.zeros(lanes, jnp.int32)

    def source(code: int, c: jax.Array, box: jax.Array) -> Any:
        if code == CONST:
            return jnp.full(lanes, c), jnp.full(lanes, c), keep
        op = OPS[code]
        if op.source_interval is not None:
            p = params[c.astype(jnp.int32)]
            lo, hi = op.source_interval(
                jnp, p, (box[0], box[1]), (box[2], box[3]), (box[4], box[5])
            )
            return lo, hi, keep
        k = {VAR_X: 0, VAR_Y: 2, VAR_Z: 4}[code]
        return box[k], box[k + 1], keep

    def apply(op: Op, args: tuple[Any, ...], c: jax.Array, box: jax.Array) -> Any:
        lo, hi = interval_step(op, jnp, *args)
        choice = keep if op.choose is None else op.choose(jnp, *args).astype(jnp.int32)
        return lo, hi, choice

    return branches(apply, source)


def _need_classes() -> tuple[np.ndarray, tuple[Op, ...]]:
    """Opcodes whose need rules are the same (same arity and sign rules) share a branch:
    each opcode's class, and one op of each class (6 branches instead of one per opcode,
    which halves the prune kernel's compile time; experiments/RESULTS.md)."""
    keys = [(op.arity, op.sign_pass, op.sign_choose) for op in OPS]
    distinct = list(dict.fromkeys(keys))
    classes = np.array([distinct.index(key) for key in keys], np.int32)
    return classes, tuple(OPS[keys.index(key)] for key in distinct)


NEED_CLASS, _NEED_OPS = _need_classes()


def _need_branches(lanes: int) -> list[Callable[..., Any]]:
    """One branch per need class (:data:`NEED_CLASS`): what a row's arguments must
    provide, given what it must.

    ``((lo, hi, a, b, c), wanted, choice, need_a, need_b, same, imm_a, imm_b) →
    (need_a', need_b', code)``: the arguments' merged needs (nothing passes to an
    immediate) and the row's code (its need, with its sign choice × 8). Only ``min`` and
    ``max`` read their operands' intervals, inside their branch (a read before the switch
    would cost every row).
    Only "value < 0" matters at the root. Ops with a ``sign_pass`` rule pass such a test
    on (``neg`` flipped); where the row's ``sign_choose`` rule names one argument, the row
    is replaced by it (sign choice 1 or 2). An interval choice passes any need unchanged.
    """

    def need(op: Op, source: tuple[Any, ...], wanted: Any, ch: Any, need_a: Any, need_b: Any,
             same: Any, imm_a: Any, imm_b: Any) -> Any:  # fmt: skip
        sign_choice = jnp.zeros(lanes, jnp.int32)
        test = (wanted == LESS) | (wanted == GREATER)
        passed = jnp.where(wanted == NONE, NONE, VALUE)
        if op.sign_pass == "flip":
            passed = jnp.where(test, wanted ^ (LESS | GREATER), passed)
        elif op.sign_pass == "same":
            assert op.sign_choose is not None
            lo, hi, ia, ib, c = source
            a, b = _intervals(lo, hi, ia, ib, imm_a, imm_b, c, lanes)
            clean = ~(jnp.isnan(a[0]) | jnp.isnan(a[1]) | jnp.isnan(b[0]) | jnp.isnan(b[1]))
            usable = clean & test
            chosen = jnp.where(
                wanted == GREATER,
                op.sign_choose(jnp, a, b, True),
                op.sign_choose(jnp, a, b, False),
            ).astype(jnp.int32)
            sign_choice = jnp.where(usable & (ch == 0), chosen, 0)
            passed = jnp.where(usable | (ch != 0), wanted, passed)
            ch = jnp.where(ch != 0, ch, sign_choice)
        to_a = jnp.where((ch != 2) & ~imm_a, passed, NONE) if op.arity >= 1 else NONE
        to_b = jnp.where((ch != 1) & ~imm_b, passed, NONE) if op.arity >= 2 else NONE
        merged_a = need_a | to_a
        merged_b = jnp.where(same, merged_a, need_b) | to_b
        # With a == b the second update wins, so it must carry both.
        return jnp.where(same, merged_b, merged_a), merged_b, wanted + 8 * sign_choice

    def branch(op: Op) -> Callable[..., Any]:
        return lambda source, *context: need(op, source, *context)

    return [branch(op) for op in _NEED_OPS]


def _operands(row_args: jax.Array) -> tuple[jax.Array, ...]:
    """A row's register operands and whether each is an immediate. An immediate's index
    is its partner's (so its reads and writes touch a register the row uses anyway)."""
    a, b = row_args[0], row_args[1]
    imm_a, imm_b = a == IMMEDIATE, b == IMMEDIATE
    return jnp.where(imm_a, b, a), jnp.where(imm_b, a, b), imm_a, imm_b


def _intervals(
    lo: jax.Array, hi: jax.Array, a: jax.Array, b: jax.Array, imm_a: jax.Array,
    imm_b: jax.Array, c: jax.Array, lanes: int,
) -> tuple[tuple[jax.Array, jax.Array], ...]:  # fmt: skip
    """The operands' intervals: registers', or ``[c, c]`` for an immediate."""

    def one(index: jax.Array, immediate: jax.Array) -> tuple[jax.Array, jax.Array]:
        low, high = _read(lo, index, lanes), _read(hi, index, lanes)
        return jnp.where(immediate, c, low), jnp.where(immediate, c, high)

    return one(a, imm_a), one(b, imm_b)


#: Opcodes that take two operands, either of which may be an immediate.
_BINARY = tuple(code for code, op in enumerate(OPS) if op.arity == 2)
#: The branch of :func:`_reading` for ``[immediate side, opcode]``: side 0 none, 1 operand
#: b, 2 operand a (only binary ops have immediates; others keep their plain branch).
_KINDS = np.array(
    [
        list(range(len(OPS))),
        [len(OPS) + _BINARY.index(c) if c in _BINARY else c for c in range(len(OPS))],
        [
            len(OPS) + len(_BINARY) + _BINARY.index(c) if c in _BINARY else c
            for c in range(len(OPS))
        ],
    ],
    np.int32,
)


def _reading(
    rules: list[Callable[..., Any]],
    read: Callable[[Any, jax.Array], Any],
    constant: Callable[[jax.Array], Any],
) -> list[Callable[..., Any]]:
    """``rules`` (one per opcode, ``(a, b, c, *context) → result``) as branches that read
    their own operands, ``(source, a, b, c, *context) → result``: one per opcode, then
    one per binary opcode with operand b the row's constant, then with operand a (see
    :data:`_KINDS`). Reading inside the branch lets XLA fuse the read into the op (a read
    before the switch is a copy) and skip an immediate's read."""

    def branch(rule: Callable[..., Any], immediate: int | None) -> Callable[..., Any]:
        def run(source: Any, a: jax.Array, b: jax.Array, c: jax.Array, *context: Any) -> Any:
            va = constant(c) if immediate == 0 else read(source, a)
            vb = constant(c) if immediate == 1 else read(source, b)
            return rule(va, vb, c, *context)

        return run

    plain = [branch(rule, None) for rule in rules]
    return plain + [branch(rules[c], side) for side in (1, 0) for c in _BINARY]


def _kind(op: jax.Array, imm_a: jax.Array, imm_b: jax.Array) -> jax.Array:
    """The branch of :func:`_reading` for a row: its opcode and which operand is immediate."""
    side = imm_b.astype(jnp.int32) + 2 * imm_a.astype(jnp.int32)
    return jnp.asarray(_KINDS)[side, op]


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


def _pruned(
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
        a, b, imm_a, imm_b = _operands(args[start + i])
        ia, ib = _intervals(lo, hi, a, b, imm_a, imm_b, c, k4)
        low, high, ch = lax.switch(op, interval_rules, ia, ib, c, box)
        return (
            _write(lo, i, low, k4),
            _write(hi, i, high, k4),
            _write(choice, i, ch, k4),
            _write(need, i, jnp.zeros(k4, jnp.int32), k4),
        )

    lo, hi, choice, need = lax.fori_loop(0, n, forward, (lo, hi, choice, need))
    r = n - 1
    rlo, rhi = _read(lo, r, k4), _read(hi, r, k4)
    inside = rhi < 0
    ambiguous = ~inside & ~(rlo >= 0)  # NaN bounds are ambiguous too
    need = _write(need, r, jnp.where(ambiguous, LESS, NONE), k4)
    if not prune:
        registers = PruneRegisters(lo, hi, choice, need, codes, stand_in)
        return registers, (rlo, rhi, inside, ambiguous.astype(jnp.int32)), rows_out

    def backward(j: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, ...]:
        need, codes = state
        i = r - j
        op, c = ops[start + i], consts[start + i]
        a, b, imm_a, imm_b = _operands(args[start + i])
        # All reads go into the switch and its results into the updates: with no read
        # of `need` between its two updates, XLA updates it in place.
        reads = (
            (lo, hi, a, b, c),
            _read(need, i, k4),
            _read(choice, i, k4),
            _read(need, a, k4),
            _read(need, b, k4),
            a == b,
            imm_a,
            imm_b,
        )
        need_a, need_b, code = lax.switch(need_class[op], need_rules, *reads)
        need = _write(_write(need, a, need_a, k4), b, need_b, k4)
        return need, _write(codes, i, code, k4)

    need, codes = lax.fori_loop(0, n, backward, (need, codes))

    def renumber(i: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        count, stand_in, emit = state
        a, b, imm_a, imm_b = _operands(args[start + i])
        code, ch = _read(codes, i, k4), _read(choice, i, k4)
        ch = jnp.where(ch != 0, ch, code >> 3)  # interval choice, else sign choice
        # A row replaced by its immediate becomes a `const` row (emit code 2).
        to_constant = ((ch == 1) & imm_a) | ((ch == 2) & imm_b)
        stays = (ch == 0) | to_constant
        e = ((code & 7) != NONE) & stays
        # stand_in[i]: the child-tape index that stands for row i: its own new index if
        # kept, its choice's stand_in if replaced (operands' stand-ins are final already).
        stand_in_a, stand_in_b = _read(stand_in, a, k4), _read(stand_in, b, k4)
        own = count if compact else jnp.broadcast_to(i, (k4,))
        mine = jnp.where(stays, own, jnp.where(ch == 1, stand_in_a, stand_in_b))
        return (
            count + e.astype(jnp.int32),
            _write(stand_in, i, mine, k4),
            _write(emit, base + i, e * (1 + to_constant), k4),
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
            moved = _read(stand_in, jnp.maximum(index, 0), k4)
            return jnp.where(used, jnp.where(index < 0, index, moved), 0)

        return (
            _write(new_a, base + i, renumbered(a, ar >= 1), k4),
            _write(new_b, base + i, renumbered(b, ar >= 2), k4),
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
    rules = (_interval_branches(k4, tapes.params), _need_branches(k4))
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
        regs, (rlo, rhi, inside, total), rows_out = _pruned(
            tapes, start, lengths[g], boxes[g], regs, (emit, new_a, new_b), start, rules,
            prune=prune,
        )  # fmt: skip
        return regs, PruneOutputs(
            _write(root_lo, g, rlo, k4),
            _write(root_hi, g, rhi, k4),
            _write(painted, g, inside, k4),
            _write(kept, g, total, k4),
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


def _first_depths(
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
    value_rules = _reading(value_branches(params), _row, lambda c: jnp.full(px, c))
    tiles = starts.shape[0]

    def evaluated(
        regs: jax.Array, start: jax.Array, n: jax.Array, x: jax.Array, y: jax.Array, z: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The registers after tape ``ops[start : start + n]`` at the ``px`` points, and
        its value there."""

        def step(i: jax.Array, regs: jax.Array) -> jax.Array:
            op, c = ops[start + i], consts[start + i]
            a, b, imm_a, imm_b = _operands(args[start + i])
            v = lax.switch(_kind(op, imm_a, imm_b), value_rules, regs, a, b, c, x, y, z)
            return _set_row(regs, i, v)

        regs = lax.fori_loop(0, n, step, regs)
        return regs, _row(regs, n - 1)

    def tile(t: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        regs, out = state  # registers carried across tiles, never cleared (see above)
        start, n = starts[t], lengths[t]
        if depth == 1:
            regs, value = evaluated(
                regs, start, n, jnp.tile(xs[t], side), jnp.repeat(ys[t], side), zs[t]
            )
            return regs, _write(out, t, value if values else value < 0, px)
        x = jnp.tile(xs[t], side * px // column)
        y = jnp.tile(jnp.repeat(ys[t], side), px // column)
        if not firsts:
            regs, value = evaluated(regs, start, n, x, y, jnp.repeat(zs[t], column))
            return regs, _write(out, t, value if values else value < 0, px)
        if squares is None:
            limit = jnp.full(column, depth, jnp.int32) if limits is None else limits[t]
        else:  # what the box's square knows: depths below it need no search
            assert offsets is not None
            assert caps is not None
            known = _row(out, squares[t])
            limit = jnp.minimum(known - offsets[t], caps[t])

        regs, first, _ = _first_depths(
            lambda regs, z: evaluated(regs, start, n, x, y, z), regs, zs[t], limit, chunk
        )
        if offsets is not None and none is not None:
            first = jnp.where(first < depth, first + offsets[t], none)
        if squares is not None:
            return regs, _set_row(out, squares[t], jnp.minimum(known, first))
        return regs, _write(out, t, first, column)

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
    value_rules = _reading(value_branches(tapes.params), _row, full) + skipped
    rules = (_interval_branches(lanes, tapes.params), _need_branches(lanes))
    lane_z, lane_row, lane_col = (
        jnp.asarray(a, jnp.int32) for a in np.unravel_index(np.arange(lanes), (kz, k, k))
    )
    iota = jnp.arange(lanes, dtype=jnp.int32)

    def parent(g: jax.Array, state: tuple[Any, ...]) -> tuple[Any, ...]:
        pruning, rows_out, regs, known, tally = state
        start, n = starts[g], lengths[g]
        pruning, (_, _, inside, kept), rows_out = _pruned(
            tapes, start, n, boxes[g], pruning, rows_out, 0, rules, compact=False
        )
        emit, new_a, new_b = rows_out

        def z_read(i: jax.Array, reads: jax.Array) -> jax.Array:  # a child's rows read z
            return reads | ((_read(emit, i, lanes) == 1) & z_reads[start + i])

        reads = lax.fori_loop(0, n, z_read, jnp.zeros(lanes, bool))
        top = tops[g] + depth * lane_z  # each child's first sample
        square = squares[g]
        root = _read(pruning.stand_in, n - 1, lanes)  # the row holding each child's value

        def evaluated(
            lane: jax.Array, regs: jax.Array, point: tuple[jax.Array, ...]
        ) -> tuple[jax.Array, jax.Array]:
            """Child ``lane``'s value at ``point``: the parent's rows it keeps."""

            def step(i: jax.Array, regs: jax.Array) -> jax.Array:
                at, row = i * lanes + lane, start + i
                a, b, imm_a, imm_b = _operands(jnp.stack([new_a[at], new_b[at]]))
                kind = _kind(tapes.ops[row], imm_a, imm_b)
                e = emit[at]  # 0: dropped, 2: a const row (a min or max's immediate)
                kind = jnp.where(e == 0, len(value_rules) - 1, jnp.where(e == 2, CONST, kind))
                c = tapes.consts[row]
                return _set_row(regs, i, lax.switch(kind, value_rules, regs, a, b, c, *point))

            regs = lax.fori_loop(0, n, step, regs)
            return regs, _row(regs, root[lane])

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
            above = _row(known, where)
            cap = jnp.where(inside[lane], 0, jnp.where(reads[lane], depth, 1))
            limit = jnp.minimum(above - sample, cap)
            regs, first, more = _first_depths(
                lambda regs, z: evaluated(lane, regs, (x, y, z)), regs, depths, limit, chunk
            )
            first = jnp.where(first < depth, first + sample, NOT_FOUND)
            first = jnp.where(inside[lane], sample, first)
            known = _set_row(known, where, jnp.minimum(above, first))
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


def unit_vectors(vectors: jax.Array, where: jax.Array, turn: jax.Array | None) -> jax.Array:
    """The vectors along axis -2 of ``vectors`` (``(..., 3, n)``) turned by ``turn`` (a 3 ×
    3 matrix, or None) and made unit length, traced (to be jitted); NaN where a vector is
    0 or not finite or ``where`` (broadcast against ``(..., n)``) is False. Scaled by the
    largest component first, so float32's range squared never overflows (the unit vector
    within an ulp or two of float64's)."""
    x, y, z = (vectors[..., i, :] for i in range(3))  # elementwise: one fused loop
    if turn is not None:  # written out: as a dot, XLA:CPU took 4× as long
        m = turn.astype(vectors.dtype)
        x, y, z = (m[i, 0] * x + m[i, 1] * y + m[i, 2] * z for i in range(3))
    scale = jnp.maximum(jnp.maximum(jnp.abs(x), jnp.abs(y)), jnp.abs(z))
    x, y, z = x / scale, y / scale, z / scale
    length = jnp.sqrt(x * x + y * y + z * z)
    usable = (scale > 0) & jnp.isfinite(scale) & where
    scaled = jnp.stack([x, y, z], axis=-2)
    length, usable = jnp.expand_dims(length, -2), jnp.expand_dims(usable, -2)
    return jnp.where(usable, scaled / length, jnp.nan)


@functools.partial(jax.jit, static_argnames="registers", compiler_options=COMPILER_OPTIONS)
def dual_leaf_kernel(
    tapes: Tapes,
    starts: jax.Array,
    lengths: jax.Array,
    count: jax.Array,
    points: jax.Array,
    where: jax.Array | None = None,
    turn: jax.Array | None = None,
    *,
    registers: int,
) -> jax.Array:
    """Value and gradient of ``count`` tapes, tape ``t`` at its ``n`` points
    ``points[t] = [x, y, z] × n``, by dual numbers (the op table's partials through
    :func:`~prospero_jax.evaluators.unroll.dual_step`, three tangents at once).

    Returns ``out[t * 4n + k * n + i]``: point ``i``'s value (``k = 0``) and its partial
    derivatives in x, y and z (``k = 1, 2, 3``). Tapes must hold no atoms (their rows have
    no partials; they give NaN). A row's register holds its value and tangents together,
    ``(4, n)``, so one update writes them; the register file is ``(registers, 4, n)``:
    read from a flat file as a slice split in two, XLA:CPU's loops ran ~4× slower per
    lane (colonnade's 1024² normals' duals 40 → 24 ms, experiments/RESULTS.md).

    With ``where`` (``(tiles, n)`` bool) and ``turn`` (a 3 × 3 matrix, or None), each
    point's gradient turned and made unit length instead (:func:`unit_vectors`: NaN where
    ``where`` is False or no direction is known): ``out[t, i]``, ``(tiles, n, 3)``, a
    point's vector together, made in the tile's step (in a pass of its own over a call's
    1,024 tiles, colonnade's normals took ~1.1 ms more a call).
    """
    ops, args, consts, _ = tapes
    dtype = consts.dtype
    n = points.shape[2]
    zero = jnp.zeros((3, n), dtype)

    def read(regs: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
        row = _row(regs, i)
        return row[0], row[1:]

    def constant(c: Any) -> tuple[jax.Array, jax.Array]:  # c: (constant, its tangent)
        return jnp.full(n, c[0]), zero

    rules = _reading(dual_branches(), read, constant)
    basis = jnp.eye(3, dtype=dtype)[:, :, None] * jnp.ones(n, dtype)  # d(x, y, z)/d(x, y, z)
    tiles = starts.shape[0]

    def tile(t: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        regs, out = state  # registers carried across tiles, never cleared (see above)
        start, length = starts[t], lengths[t]
        inputs = tuple((points[t, k], basis[k]) for k in range(3))

        def step(i: jax.Array, regs: jax.Array) -> jax.Array:
            op, c = ops[start + i], consts[start + i]
            a, b, imm_a, imm_b = _operands(args[start + i])
            kind = _kind(op, imm_a, imm_b)
            v, d = lax.switch(kind, rules, regs, a, b, (c, jnp.zeros((), dtype)), *inputs)
            return _set_row(regs, i, jnp.concatenate([v[None], d]))

        regs = lax.fori_loop(0, length, step, regs)
        duals = _row(regs, length - 1)
        if where is None:
            return regs, _set_row(out, t, duals)
        return regs, _set_row(out, t, unit_vectors(duals[1:], where[t], turn).T)

    shape = (tiles, 4, n) if where is None else (tiles, n, 3)
    state = (jnp.zeros((registers, 4, n), dtype), jnp.zeros(shape, dtype))
    out: jax.Array = lax.fori_loop(0, count, tile, state)[1]
    return out.reshape(-1) if where is None else out
