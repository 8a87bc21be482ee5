"""What every tape-interpreter kernel shares: how a row is read, dispatched and stored.

Input: tapes packed as arrays (:class:`~prospero_jax.evaluators.tape.Tapes`: opcode, two
operand indices local to the tape, and a constant per row; many tapes concatenated, each a
``(start, length)`` span), traced inside a kernel's loops.
Output: the pieces the kernels of :mod:`~prospero_jax.evaluators.cull` (prune),
:mod:`~prospero_jax.evaluators.leaf_kernels` (points, column searches) and
:mod:`~prospero_jax.evaluators.dual_kernel` (dual numbers) are built from: register
reads and in-place writes, a row's operands decoded, and the ``lax.switch`` branches
built from the op table (interval and need rules here; value and dual rules by
:func:`~prospero_jax.evaluators.tape.branches`), so that a kernel's compiled code
depends only on the op table, its buffer capacities and the dtype, never on a program.

An operand is a register or, marked :data:`~prospero_jax.evaluators.tape.IMMEDIATE`, the
row's constant: the prune kernel gives an immediate the interval ``[c, c]`` and passes it
no need, and turns a ``min``/``max`` decided for its immediate into a ``const`` row; the
point kernels have a branch per opcode and immediate side (:func:`reading`), whose
operand reads XLA fuses into the op (a 1,024-pixel read before the switch is a copy: a
third of the leaves' time).

Invariants. Registers are carried from tape to tape without clearing (a row only reads
registers written earlier in its own tape): the prune kernel's are flat 1-D buffers
indexed ``row * lanes + lane`` (:func:`read_lanes`, :func:`write_lanes`); the point
kernels' a 2-D file, one row a register (``(rows, lanes)``, the dual kernel's ``(rows,
4, lanes)``; :func:`get_row`, :func:`set_row`), read whole (a flat file's row read as a
slice and split, value from tangents, ran the dual kernel ~4× slower per lane). Both are
updated with ``dynamic_update_slice``, which XLA:CPU does in place inside a loop, on one
condition found in the compiled HLO: no fusion other than a buffer's own update may read
it in the same step. Otherwise XLA copies the whole buffer every step (a 5-50×
slowdown). So every pass reads its registers into a ``lax.switch`` (whose operands are
materialized) or into values used only by the update, and a buffer that one pass both
reads and writes is written by no other output in that pass. ``XLA_FLAGS`` gets
``xla_cpu_small_while_loop_byte_threshold`` raised at import (see
:mod:`prospero_jax.runtime.xla`), which compiles each loop into one kernel instead of one
runtime call per iteration (5× faster, ``experiments/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prospero_jax.evaluators.tape import IMMEDIATE, branches
from prospero_jax.ir.ops import CONST, OPS, VAR_X, VAR_Y, VAR_Z, Op, interval_step

#: The kernels' XLA options: LLVM's level-1 optimizations compile them about a quarter
#: faster than level 3 and run them as fast (experiments/RESULTS.md).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
#: What a row's users need of it, as bits: nothing, whether it is < 0, whether it is > 0,
#: its value. Needs merge by OR; anything but exactly LESS or GREATER counts as VALUE.
NONE, LESS, GREATER, VALUE = 0, 1, 2, 4


def read_lanes(buffer: jax.Array, row: jax.Array, lanes: int) -> jax.Array:
    """Row ``row`` of a flat register buffer of ``lanes`` lanes a row."""
    return lax.dynamic_slice(buffer, (row * lanes,), (lanes,))


def write_lanes(buffer: jax.Array, row: jax.Array, value: jax.Array, lanes: int) -> jax.Array:
    """``buffer`` with row ``row`` (of ``lanes`` lanes) set to ``value``, in place."""
    return lax.dynamic_update_slice(buffer, value.astype(buffer.dtype), (row * lanes,))


def get_row(registers: jax.Array, row: jax.Array) -> jax.Array:
    """Row ``row`` of a 2-D register file ``(rows, ...)``."""
    value: jax.Array = lax.dynamic_index_in_dim(registers, row, keepdims=False)
    return value


def set_row(registers: jax.Array, row: jax.Array, value: jax.Array) -> jax.Array:
    """``registers`` with row ``row`` set to ``value``, in place."""
    updated: jax.Array = lax.dynamic_update_index_in_dim(
        registers, value.astype(registers.dtype), row, 0
    )
    return updated


def interval_branches(lanes: int, params: Any) -> list[Callable[..., Any]]:
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


def need_branches(lanes: int) -> list[Callable[..., Any]]:
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
            a, b = operand_intervals(lo, hi, ia, ib, imm_a, imm_b, c, lanes)
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


def row_operands(row_args: jax.Array) -> tuple[jax.Array, ...]:
    """A row's register operands and whether each is an immediate. An immediate's index
    is its partner's (so its reads and writes touch a register the row uses anyway)."""
    a, b = row_args[0], row_args[1]
    imm_a, imm_b = a == IMMEDIATE, b == IMMEDIATE
    return jnp.where(imm_a, b, a), jnp.where(imm_b, a, b), imm_a, imm_b


def operand_intervals(
    lo: jax.Array, hi: jax.Array, a: jax.Array, b: jax.Array, imm_a: jax.Array,
    imm_b: jax.Array, c: jax.Array, lanes: int,
) -> tuple[tuple[jax.Array, jax.Array], ...]:  # fmt: skip
    """The operands' intervals: registers', or ``[c, c]`` for an immediate."""

    def one(index: jax.Array, immediate: jax.Array) -> tuple[jax.Array, jax.Array]:
        low, high = read_lanes(lo, index, lanes), read_lanes(hi, index, lanes)
        return jnp.where(immediate, c, low), jnp.where(immediate, c, high)

    return one(a, imm_a), one(b, imm_b)


#: Opcodes that take two operands, either of which may be an immediate.
_BINARY = tuple(code for code, op in enumerate(OPS) if op.arity == 2)
#: The branch of :func:`reading` for ``[immediate side, opcode]``: side 0 none, 1 operand
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


def reading(
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


def branch_of(op: jax.Array, imm_a: jax.Array, imm_b: jax.Array) -> jax.Array:
    """The branch of :func:`reading` for a row: its opcode and which operand is immediate."""
    side = imm_b.astype(jnp.int32) + 2 * imm_a.astype(jnp.int32)
    return jnp.asarray(_KINDS)[side, op]
