"""Tape interpreter kernels: tapes as data, so compile cost does not grow with the tape.

Input: tapes packed as arrays (:class:`Tapes`: opcode, two operand indices local to the
tape, and a constant per row; many tapes concatenated, each a ``(start, length)`` span).
Output, per kernel:

* :func:`prune_kernel` (one parent tape → its 2 × 2 children): for each child box, the
  interval of the tape's value, and the child's pruned tape: each ``min``/``max`` that
  the intervals decide is replaced by the chosen argument, and every row the value no
  longer needs is dropped (the rows kept, and their operands renumbered);
* :func:`leaf_kernel` (one tape → one 8 × 8 tile): the pixels where the value is < 0.

Both loop over groups and, inside, over the rows of one tape, dispatching each row with
``lax.switch`` over branches built from the op table (interval or value rules), so their
compiled code depends only on the op table, the buffer capacities and the dtype, never
on a program: one compilation serves every program, tile and level, and JAX's
persistent cache keeps it across processes.

Registers are flat 1-D buffers indexed ``row * lanes + lane`` and updated with
``dynamic_update_slice``: XLA:CPU updates those in place inside a loop (a 2-D register
file was copied whole every step in the prototype). ``XLA_FLAGS`` gets
``xla_cpu_small_while_loop_byte_threshold`` raised at import (see ``__init__``), which
compiles each loop into one kernel instead of one runtime call per iteration (5×
faster, measured in ``experiments/RESULTS.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prospero_jax._ops import CONST, OPS, VAR_X, VAR_Y, VAR_Z, interval_step
from prospero_jax._tape import Program

#: Children per parent (a 2 × 2 split).
CHILDREN = 4
#: Buffer capacities of one kernel call (rows of all tapes, groups or tiles).
ROW_CAPACITY = 1 << 16
GROUP_CAPACITY = 1 << 12
TILE_CAPACITY = 1 << 12
ARITY = np.array([op.arity for op in OPS], dtype=np.int32)


class Tapes(NamedTuple):
    """Concatenated tapes: row ``i`` is ``ops[i] (args[i, 0], args[i, 1])`` or ``consts[i]``.

    Operand indices are local to the row's own tape; unused ones are 0.
    """

    ops: np.ndarray  # int32[rows]
    args: np.ndarray  # int32[rows, 2]
    consts: np.ndarray  # float[rows]

    @staticmethod
    def pack(program: Program, dtype: str) -> Tapes:
        return Tapes(
            program.opcodes.astype(np.int32),
            np.maximum(program.args, 0).astype(np.int32),
            program.consts.astype(dtype),
        )

    def __len__(self) -> int:
        return len(self.ops)

    def take(self, rows: np.ndarray) -> Tapes:
        return Tapes(self.ops[rows], self.args[rows], self.consts[rows])

    def padded(self, capacity: int) -> Tapes:
        pad = capacity - len(self)
        return Tapes(
            np.pad(self.ops, (0, pad)),
            np.pad(self.args, ((0, pad), (0, 0))),
            np.pad(self.consts, (0, pad)),
        )


def register_capacity(longest: int) -> int:
    """Register-file rows for tapes up to ``longest``: 1024, 8192, 65536, ... (few shapes)."""
    capacity = 1024
    while capacity < longest:
        capacity *= 8
    return capacity


def _read(buffer: jax.Array, row: jax.Array, lanes: int) -> jax.Array:
    return lax.dynamic_slice(buffer, (row * lanes,), (lanes,))


def _write(buffer: jax.Array, row: jax.Array, value: jax.Array, lanes: int) -> jax.Array:
    return lax.dynamic_update_slice(buffer, value.astype(buffer.dtype), (row * lanes,))


def _interval_branches() -> list[Callable[..., Any]]:
    """One branch per opcode: ``(a, b, const, box, z) → (lo, hi, choice)``, 4 lanes."""

    def branch(code: int) -> Callable[..., Any]:
        op = OPS[code]

        def run(a: Any, b: Any, c: jax.Array, box: jax.Array, z: jax.Array) -> Any:
            keep = jnp.zeros(CHILDREN, jnp.int32)
            if code == CONST:
                return jnp.full(CHILDREN, c), jnp.full(CHILDREN, c), keep
            if code in (VAR_X, VAR_Y):
                k = 0 if code == VAR_X else 2
                return box[k], box[k + 1], keep
            if code == VAR_Z:
                return jnp.full(CHILDREN, z), jnp.full(CHILDREN, z), keep
            args = (a, b)[: op.arity]
            lo, hi = interval_step(op, jnp, *args)
            choice = keep if op.choose is None else op.choose(jnp, *args).astype(jnp.int32)
            return lo, hi, choice

        return run

    return [branch(code) for code in range(len(OPS))]


@functools.partial(jax.jit, static_argnames="registers")
def prune_kernel(
    ops: jax.Array,
    args: jax.Array,
    consts: jax.Array,
    starts: jax.Array,
    lengths: jax.Array,
    count: jax.Array,
    boxes: jax.Array,
    z: jax.Array,
    *,
    registers: int,
) -> tuple[jax.Array, ...]:
    """Interval-evaluate and prune ``count`` parent tapes over their 4 child boxes each.

    ``boxes[g]`` is ``[xlo, xhi, ylo, yhi] × 4 children``. Returns, per child ``g * 4 +
    k``: ``lo``, ``hi`` (the value's interval) and ``kept`` (its pruned tape's length, 0
    unless the interval straddles 0 or is NaN); per parent row ``r * 4 + k``: ``emit``
    (row r is in child k's tape) and ``new_args`` (its operands there, ``[2, rows*4]``).
    """
    dtype = consts.dtype
    k4 = CHILDREN
    lanes = jnp.arange(k4, dtype=jnp.int32)
    branches = _interval_branches()
    arity = jnp.asarray(ARITY)
    rows = ops.shape[0]
    groups = starts.shape[0]

    # Registers are carried from group to group without clearing: every register a row
    # reads was written earlier in the same group (operands precede their users).
    size = registers * k4

    def group(g: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        (lo, hi, choice, alias, live, index), out = state[:6], state[6:]
        root_lo, root_hi, kept, emit, new_a, new_b = out
        start, n, box = starts[g], lengths[g], boxes[g]

        def forward(i: jax.Array, regs: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
            lo, hi, choice, alias, live = regs
            op, a, b = ops[start + i], args[start + i, 0], args[start + i, 1]
            ia = (_read(lo, a, k4), _read(hi, a, k4))
            ib = (_read(lo, b, k4), _read(hi, b, k4))
            low, high, ch = lax.switch(op, branches, ia, ib, consts[start + i], box, z)
            al = jnp.where(ch == 1, _read(alias, a, k4), jnp.where(ch == 2, _read(alias, b, k4), i))
            return (
                _write(lo, i, low, k4),
                _write(hi, i, high, k4),
                _write(choice, i, ch, k4),
                _write(alias, i, al, k4),
                _write(live, i, jnp.zeros(k4, bool), k4),
            )

        lo, hi, choice, alias, live = lax.fori_loop(0, n, forward, (lo, hi, choice, alias, live))
        r = n - 1
        rlo, rhi = _read(lo, r, k4), _read(hi, r, k4)
        ambiguous = ~(rhi < 0) & ~(rlo >= 0)  # NaN bounds are ambiguous too
        live = _write(live, r, ambiguous, k4)

        def backward(j: jax.Array, live: jax.Array) -> jax.Array:
            i = r - j
            op, a, b = ops[start + i], args[start + i, 0], args[start + i, 1]
            on, ch, ar = _read(live, i, k4), _read(choice, i, k4), arity[op]
            live_a = _read(live, a, k4) | (on & (ar >= 1) & (ch != 2))
            live_b = jnp.where(a == b, live_a, _read(live, b, k4)) | (on & (ar >= 2) & (ch != 1))
            # One scatter for both operands: two updates with a read of the buffer between
            # them made XLA copy the whole buffer every step. With a == b, both carry live_b.
            index = jnp.concatenate([a * k4 + lanes, b * k4 + lanes])
            value = jnp.concatenate([jnp.where(a == b, live_b, live_a), live_b])
            return live.at[index].set(value, mode="promise_in_bounds")

        live = lax.fori_loop(0, n, backward, live)

        def renumber(i: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
            count, index, emit, new_a, new_b = state
            op, a, b = ops[start + i], args[start + i, 0], args[start + i, 1]
            e = _read(live, i, k4) & (_read(choice, i, k4) == 0)
            index = _write(index, i, count, k4)
            ar = arity[op]
            na = jnp.where(ar >= 1, index[_read(alias, a, k4) * k4 + lanes], 0)
            nb = jnp.where(ar >= 2, index[_read(alias, b, k4) * k4 + lanes], 0)
            row = start + i
            return (
                count + e.astype(jnp.int32),
                index,
                _write(emit, row, e, k4),
                _write(new_a, row, na, k4),
                _write(new_b, row, nb, k4),
            )

        zero = jnp.zeros(k4, jnp.int32)
        total, index, emit, new_a, new_b = lax.fori_loop(
            0, n, renumber, (zero, index, emit, new_a, new_b)
        )
        return (
            lo,
            hi,
            choice,
            alias,
            live,
            index,
            _write(root_lo, g, rlo, k4),
            _write(root_hi, g, rhi, k4),
            _write(kept, g, total, k4),
            emit,
            new_a,
            new_b,
        )

    state = (
        jnp.zeros(size, dtype),
        jnp.zeros(size, dtype),
        jnp.zeros(size, jnp.int32),
        jnp.zeros(size, jnp.int32),
        jnp.zeros(size, bool),
        jnp.zeros(size, jnp.int32),
        jnp.zeros(groups * k4, dtype),
        jnp.zeros(groups * k4, dtype),
        jnp.zeros(groups * k4, jnp.int32),
        jnp.zeros(rows * k4, bool),
        jnp.zeros(rows * k4, jnp.int32),
        jnp.zeros(rows * k4, jnp.int32),
    )
    root_lo, root_hi, kept, emit, new_a, new_b = lax.fori_loop(0, count, group, state)[6:]
    return root_lo, root_hi, kept, emit, jnp.stack([new_a, new_b])


def _value_branches() -> list[Callable[..., Any]]:
    """One branch per opcode: ``(a, b, const, x, y, z) → value`` over a leaf's pixels."""

    def branch(code: int) -> Callable[..., Any]:
        op = OPS[code]

        def run(a: Any, b: Any, c: Any, x: Any, y: Any, z: Any) -> Any:
            if code == CONST:
                return jnp.full_like(x, c)
            if code in (VAR_X, VAR_Y, VAR_Z):
                return {VAR_X: x, VAR_Y: y, VAR_Z: jnp.full_like(x, z)}[code]
            assert op.rule is not None
            return op.rule(jnp, *(a, b)[: op.arity])

        return run

    return [branch(code) for code in range(len(OPS))]


@functools.partial(jax.jit, static_argnames=("registers", "side"))
def leaf_kernel(
    ops: jax.Array,
    args: jax.Array,
    consts: jax.Array,
    starts: jax.Array,
    lengths: jax.Array,
    count: jax.Array,
    xs: jax.Array,
    ys: jax.Array,
    z: jax.Array,
    *,
    registers: int,
    side: int,
) -> jax.Array:
    """Evaluate ``count`` tapes, tape ``t`` on the ``side²`` pixels ``xs[t] × ys[t]``.

    Returns ``inside[t * side² + side * row + col]``: the value at ``(xs[t, col],
    ys[t, row])`` is < 0.
    """
    px = side * side
    branches = _value_branches()
    tiles = starts.shape[0]

    def tile(t: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        regs, inside = state  # registers carried across tiles, never cleared (see above)
        start, n = starts[t], lengths[t]
        x = jnp.tile(xs[t], side)
        y = jnp.repeat(ys[t], side)

        def step(i: jax.Array, regs: jax.Array) -> jax.Array:
            op, a, b = ops[start + i], args[start + i, 0], args[start + i, 1]
            va, vb = _read(regs, a, px), _read(regs, b, px)
            v = lax.switch(op, branches, va, vb, consts[start + i], x, y, z)
            return _write(regs, i, v, px)

        regs = lax.fori_loop(0, n, step, regs)
        return regs, _write(inside, t, _read(regs, n - 1, px) < 0, px)

    state = (jnp.zeros(registers * px, consts.dtype), jnp.zeros(tiles * px, bool))
    inside: jax.Array = lax.fori_loop(0, count, tile, state)[1]
    return inside
