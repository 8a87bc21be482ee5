"""The tape as data: the one encoding every interpreter reads, and its one branch builder.

Input: a Program.
Output: arrays a compiled kernel takes as arguments, so what XLA compiles depends on the
op table, a few size buckets and the dtype, never on the program:

* :class:`Tapes`: rows ``(opcode, operand a, operand b, constant)``, operands as indices
  local to the row's own tape (many tapes concatenated, each a ``(start, length)`` span):
  the culling kernels (:mod:`prospero_jax.evaluators.cull`) read it, and prune it;
* :class:`RegisterTape`: the same rows with a register-file view (:func:`registers`):
  each row reads registers ``a``, ``b`` and writes ``dst``, registers reused after a
  value's last use, so the file has ``max_live`` rows, not one per instruction; constants
  are indices into a separate array (so they can be a traced argument, for derivatives
  with respect to them): the scan interpreters (:mod:`prospero_jax.evaluators.scan`);
* :func:`bucket`: the one rule that rounds sizes up so few shapes are compiled;
* :func:`branches`: one ``lax.switch`` branch per opcode, from the op table: inputs and
  constants by a ``source`` rule, every other op by an ``apply`` rule. Every interpreter
  builds its branches with it (values, dual numbers, intervals, sign needs).

Invariants: operands precede their users (SSA order), so a row only reads registers
written earlier in its own tape; padding rows are ``const`` rows whose result nobody reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Int32

from prospero_jax.ir.ops import CONST, OPS, VAR_X, VAR_Y, VAR_Z, Op
from prospero_jax.ir.passes import allocate_registers
from prospero_jax.ir.program import Program

#: Operands per opcode, as an array kernels can index.
ARITY = np.array([op.arity for op in OPS], dtype=np.int32)


def bucket(n: int, smallest: int, growth: int = 2) -> int:
    """``n`` rounded up to ``smallest · growthᵏ``: few distinct sizes, so few compilations."""
    size = smallest
    while size < n:
        size *= growth
    return size


def register_capacity(longest: int) -> int:
    """Register-file rows of the culling kernels for tapes up to ``longest`` rows: 1024,
    8192, 65536, ... (steps of 8: each size is one compilation per kernel)."""
    return bucket(longest, 1024, growth=8)


class Tapes(NamedTuple):
    """Concatenated tapes: row ``i`` is ``ops[i] (args[i, 0], args[i, 1])`` or ``consts[i]``.

    Operand indices are local to the row's own tape; unused ones are 0.
    """

    ops: np.ndarray  # int32[rows]
    args: np.ndarray  # int32[rows, 2]
    consts: np.ndarray  # float[rows]

    @staticmethod
    def pack(program: Program, dtype: str) -> Tapes:
        """The program as one tape (constants beyond ``dtype``'s range become ±inf)."""
        with np.errstate(over="ignore"):
            consts = program.consts.astype(dtype)
        return Tapes(
            program.opcodes.astype(np.int32),
            np.maximum(program.args, 0).astype(np.int32),
            consts,
        )

    def __len__(self) -> int:
        return len(self.ops)

    def take(self, rows: np.ndarray | slice) -> Tapes:
        return Tapes(self.ops[rows], self.args[rows], self.consts[rows])

    def padded(self, capacity: int) -> Tapes:
        """A copy with zero rows appended up to ``capacity`` rows."""
        out = Tapes(
            np.zeros(capacity, np.int32),
            np.zeros((capacity, 2), np.int32),
            np.zeros(capacity, self.consts.dtype),
        )
        for dst, src in zip(out, self, strict=True):
            dst[: len(src)] = src
        return out


class RegisterTape(NamedTuple):
    """A program's rows with a register file: row ``i`` computes ``ops[i]`` of registers
    ``a[i]``, ``b[i]`` (or takes constant number ``const[i]``) into register ``dst[i]``.

    Lengths are padded to a bucket with ``const`` rows that write the scratch register.
    """

    ops: Int32[np.ndarray, " rows"]
    a: Int32[np.ndarray, " rows"]
    b: Int32[np.ndarray, " rows"]
    dst: Int32[np.ndarray, " rows"]
    const: Int32[np.ndarray, " rows"]
    root: int  # the register holding the value at the end
    registers: int  # register-file rows, scratch included

    @property
    def rows(self) -> tuple[np.ndarray, ...]:
        """``(ops, a, b, dst, const)``: what a scan over the rows takes."""
        return self.ops, self.a, self.b, self.dst, self.const


@functools.lru_cache(maxsize=32)
def registers(program: Program) -> RegisterTape:
    """``program`` as a :class:`RegisterTape` (cached per program content)."""
    n = len(program)
    slots, count = allocate_registers(program)
    size = bucket(count + 1, 16)
    scratch = size - 1
    rows = bucket(n, 256)
    ops = np.full(rows, CONST, np.int32)
    a, b, const = (np.zeros(rows, np.int32) for _ in range(3))
    dst = np.full(rows, scratch, np.int32)
    ops[:n] = program.opcodes
    args = program.args
    a[:n] = np.where(args[:, 0] >= 0, slots[np.maximum(args[:, 0], 0)], 0)
    b[:n] = np.where(args[:, 1] >= 0, slots[np.maximum(args[:, 1], 0)], 0)
    dst[:n] = slots
    const[:n] = np.maximum(np.cumsum(program.opcodes == CONST) - 1, 0)
    return RegisterTape(ops, a, b, dst, const, int(slots[-1]), size)


def branches(apply: Callable[..., Any], source: Callable[..., Any]) -> list[Callable[..., Any]]:
    """One ``lax.switch`` branch per opcode, each ``(a, b, *context) → result``.

    Inputs and ``const`` (arity 0) give ``source(code, *context)``; every other op gives
    ``apply(op, args, *context)`` with ``args`` its ``arity`` first operands of ``(a,
    b)``. All branches must return the same structure.
    """

    def branch(code: int, op: Op) -> Callable[..., Any]:
        if op.arity == 0:
            return lambda a, b, *context: source(code, *context)
        return lambda a, b, *context: apply(op, (a, b)[: op.arity], *context)

    return [branch(code, op) for code, op in enumerate(OPS)]


def value_branches() -> list[Callable[..., Any]]:
    """Branches ``(a, b, const, x, y, z) → value``: the op table's value rules on lanes of
    points (the leaf kernel's pixels, the value scan's points)."""

    def source(code: int, c: Any, x: Any, y: Any, z: Any) -> Any:
        if code == CONST:
            return jnp.full_like(x, c)
        return {VAR_X: x, VAR_Y: y, VAR_Z: jnp.full_like(x, z)}[code]

    def apply(op: Op, args: tuple[Any, ...], c: Any, x: Any, y: Any, z: Any) -> Any:
        assert op.rule is not None
        return op.rule(jnp, *args)

    return branches(apply, source)
