"""The tape as data: the one encoding every interpreter reads, and its one branch builder.

Input: a Program.
Output: arrays a compiled kernel takes as arguments, so what XLA compiles depends on the
op table, a few size buckets and the dtype, never on the program:

* :class:`Tapes`: rows ``(opcode, operand a, operand b, constant)``, operands as indices
  local to the row's own tape (many tapes concatenated, each a ``(start, length)`` span):
  the culling kernels (:mod:`prospero_jax.evaluators.cull`,
  :mod:`~prospero_jax.evaluators.leaf_kernels`) read it, and prune it;
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

from prospero_jax.ir.ops import ATOMS, CONST, OPS, PARAMS, QUADRIC, VAR_X, VAR_Y, VAR_Z, Op
from prospero_jax.ir.passes import allocate_registers
from prospero_jax.ir.program import Program
from prospero_jax.runtime.memory import aligned_empty, aligned_zeros

#: Operands per opcode, as an array kernels can index.
ARITY = np.array([op.arity for op in OPS], dtype=np.int32)


class Pruned(NamedTuple):
    """One prune level's results on the host, from either pruner (the prune kernel's,
    read back, or :func:`~prospero_jax.evaluators.host_cull.prune_layers`): per child
    (``(parents, lanes)``) its value's interval ``lo``, ``hi``, whether it is ``inside``
    (``hi < 0``) and its pruned tape's length ``kept``; per parent row and child
    (``(rows * lanes,)``, lane fastest) ``emit`` (0: dropped, 1: kept, 2: kept as a
    ``const`` row holding its immediate) and its operands there, ``new_a``, ``new_b``."""

    lo: np.ndarray
    hi: np.ndarray
    inside: np.ndarray
    kept: np.ndarray
    emit: np.ndarray
    new_a: np.ndarray
    new_b: np.ndarray


def bucket(n: int, smallest: int, growth: int = 2) -> int:
    """``n`` rounded up to ``smallest · growthᵏ``: few distinct sizes, so few compilations."""
    size = smallest
    while size < n:
        size *= growth
    return size


def register_capacity(longest: int) -> int:
    """Register-file rows of the culling kernels for tapes up to ``longest`` rows: 1024,
    4096, 16384, ... (steps of 4: each size is one compilation per kernel, and a call
    zeroes its file: prospero's, 8192 rows in steps of 8, cost its 1024² frame ~5 %,
    experiments/call_shapes.py)."""
    return bucket(longest, 1024, growth=4)


def _z_numbers(offset: int, squared: bool) -> np.ndarray:
    """Per opcode, which of a row's numbers are its affine forms' ``offset``-th ones (z's
    coefficient: 2; the constant: 3), of every atom (``squared``) or only of those whose
    forms are not squared."""
    mask = np.zeros((len(OPS), PARAMS), bool)
    for code, op in enumerate(OPS):
        if squared or code != QUADRIC:
            mask[code, [start + offset for start in op.forms]] = True
    return mask


#: Per opcode, which of a row's numbers (``params``) multiply z: its forms' third ones.
Z_NUMBERS = _z_numbers(2, squared=True)
#: Per opcode, the constant terms of forms whose zeros' signs reach the row's value.
SIGNED_CONSTANTS = _z_numbers(3, squared=False)
#: The opcodes with forms (an atom's numbers in ``params``), and per opcode its place
#: among them plus one (0: none).
FORM_OPS = np.flatnonzero(Z_NUMBERS.any(axis=1))
FORM_PLACE = np.zeros(len(OPS), np.intp)
FORM_PLACE[FORM_OPS] = np.arange(1, len(FORM_OPS) + 1)
_FORM_Z, _FORM_SIGNED = (m[FORM_OPS].astype(np.int32) for m in (Z_NUMBERS, SIGNED_CONSTANTS))


def run_rows(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The rows of the runs ``starts[i] : starts[i] + lengths[i]``, one after another: how
    tapes (each a run of rows) are gathered, in any order and with repeats."""
    ends = np.cumsum(lengths)
    rows: np.ndarray = np.repeat(starts - ends + lengths, lengths)
    return rows + np.arange(len(rows))


class Tapes(NamedTuple):
    """Concatenated tapes: row ``i`` is ``ops[i] (args[i, 0], args[i, 1])`` or ``consts[i]``.

    Operand indices are local to the row's own tape; unused ones are 0. An operand index
    of :data:`IMMEDIATE` (-1) means the operand is the row's own constant ``consts[i]``
    (an *immediate*): :meth:`pack` folds each ``const`` that a binary op uses into the row,
    so a tape has no ``const`` row but a program's value or a unary op's argument. The op
    is the op table's, unchanged: only where its operand comes from differs. An atom
    row's constant is the index of its numbers in ``params``, the table of every atom of
    the program (shared by all tapes cut from it: :meth:`take` keeps it whole; its rows
    are padded to a bucket, so few shapes are compiled).
    """

    ops: np.ndarray  # int32[rows]
    args: np.ndarray  # int32[rows, 2]
    consts: np.ndarray  # float[rows]
    params: np.ndarray  # float[atoms bucket, PARAMS]

    @staticmethod
    def pack(program: Program, dtype: str) -> Tapes:
        """The program as one tape with immediates (constants beyond ``dtype``'s range
        become ±inf), and as many rows as the program has, less its folded ``const`` rows.
        """
        ops, args, consts = _immediates(program)
        params = aligned_zeros((bucket(len(program.params), 256), PARAMS), dtype)
        with np.errstate(over="ignore"):
            params[: len(program.params)] = program.params
            return Tapes(ops, args, consts.astype(dtype), params)

    def __len__(self) -> int:
        return len(self.ops)

    def take(self, rows: np.ndarray | slice) -> Tapes:
        return Tapes(self.ops[rows], self.args[rows], self.consts[rows], self.params)

    def z_free(self, lengths: np.ndarray) -> np.ndarray:
        """Per tape (``lengths`` rows each, in order), whether its value is the same at
        every z, bit for bit: no ``var-z`` row, and every atom's forms with a z
        coefficient of 0 (``0·z`` is a zero whose sign follows z's, so an affine form's
        constant must not be 0 either, unless the form is squared: a quadric's)."""
        reads = self.z_reads()
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        free, rows = np.zeros(len(lengths), bool), lengths > 0  # no rows: no value at all
        if rows.any():
            free[rows] = np.add.reduceat(reads, starts[rows]) == 0
        return free

    def z_reads(self) -> np.ndarray:
        """Per row, whether its value may differ with z (:meth:`z_free`'s rule for one
        row: a ``var-z`` row, or an atom with a form that reads z)."""
        # The rule per opcode with forms and atom of the table (its few rows, not the
        # tapes' many: colonnade's 1024³ leaves 6 → 0.5 ms a frame), then looked up per row.
        zero = (self.params == 0).astype(np.int32)  # NaN is not 0: it reads z
        per_atom = np.zeros((len(FORM_OPS) + 1, len(self.params)), bool)
        per_atom[1:] = _FORM_Z @ (1 - zero).T + _FORM_SIGNED @ zero.T > 0  # (forms, atoms)
        code = self.ops
        place = FORM_PLACE[code]
        atom = np.where(place > 0, self.consts, 0).astype(np.intp)
        reads: np.ndarray = per_atom[place, atom] | (code == VAR_Z)
        return reads

    def padded(self, capacity: int) -> Tapes:
        """A copy of ``capacity`` rows, these first, 64-byte aligned (kernels take it as it
        is: :mod:`~prospero_jax.runtime.memory`); the rows after them are left unset, as no
        kernel reads past a tape's span (not zeroing a leaf call's 65,536 rows saves
        ~40 µs a call)."""
        out = Tapes(
            aligned_empty(capacity, np.int32),
            aligned_empty((capacity, 2), np.int32),
            aligned_empty(capacity, self.consts.dtype),
            self.params,
        )
        for dst, src in zip(out[:3], self[:3], strict=True):
            dst[: len(src)] = src
        return out

    def unpack(self, consts: np.ndarray | None = None, params: np.ndarray | None = None) -> Program:
        """One tape back as a Program (each immediate its own ``const`` row again), with
        ``consts`` and ``params`` (e.g. float64 ones) in place of the tape's if given."""
        consts = self.consts.astype(np.float64) if consts is None else consts
        table = self.params if params is None else params
        ops, args = self.ops.tolist(), self.args.tolist()
        out_ops: list[int] = []
        out_args: list[list[int]] = []
        out_consts: list[float] = []
        out_params: list[np.ndarray] = []
        where: list[int] = []  # the program row of each tape row
        known: dict[bytes, int] = {}  # a constant's bits → its program row (one each)

        def emit(code: int, a: int, b: int, c: float) -> int:
            out_ops.append(code)
            out_args.append([a, b])
            out_consts.append(c)
            return len(out_ops) - 1

        def constant(c: float, last: bool = False) -> int:
            bits = np.float64(c).tobytes()
            if bits not in known or last:
                known[bits] = emit(CONST, -1, -1, c)
            return known[bits]

        for i, code in enumerate(ops):
            last = i == len(ops) - 1
            if code == CONST:
                where.append(constant(float(consts[i]), last))
                continue
            if OPS[code].params:
                out_params.append(table[int(self.consts[i])].astype(np.float64))
                where.append(emit(code, -1, -1, 0.0))
                continue
            operands = [-1, -1]
            for k in range(OPS[code].arity):
                index = args[i][k]
                operands[k] = constant(float(consts[i])) if index == IMMEDIATE else where[index]
            where.append(emit(code, operands[0], operands[1], 0.0))
        return Program.from_rows(out_ops, out_args, out_consts, "<tape>", out_params)


#: An operand index that means "the row's own constant".
IMMEDIATE = -1


def _immediates(program: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``program``'s rows with each binary op's ``const`` operand folded in as an immediate
    (``b`` where it can be, ``a`` for ``c - x``-like rows; a commutative op with its
    constant first is swapped; none where both operands are constants, which only an
    unfoldable result such as ``0 / 0`` leaves), and the ``const`` rows left unused
    dropped."""
    ops = program.opcodes.astype(np.int32)
    args = np.maximum(program.args, 0).astype(np.int32)
    consts = np.where(ops == CONST, program.consts, 0.0)
    atoms = np.isin(ops, ATOMS)
    consts[atoms] = np.arange(atoms.sum())  # an atom's constant: its row of params
    is_const = np.append(ops == CONST, False)  # index -1 (no operand) is no constant
    binary = ARITY[ops] == 2
    const_a = binary & is_const[program.args[:, 0]]
    const_b = binary & is_const[program.args[:, 1]]
    const_a, const_b = const_a & ~const_b, const_b & ~const_a
    commutative = np.array([op.commutative for op in OPS])[ops]
    swap = const_a & ~const_b & commutative
    args[swap] = args[swap][:, ::-1]
    const_a, const_b = const_a & ~swap, const_b | swap
    for side, mask in ((1, const_b), (0, const_a)):
        consts[mask] = program.consts[args[mask, side]]
        args[mask, side] = IMMEDIATE
    # Drop const rows nobody reads any more (the value, the last row, always stays).
    used = np.zeros(len(ops) + 1, bool)
    used[args[ARITY[ops] >= 1, 0]] = True
    used[args[ARITY[ops] >= 2, 1]] = True
    used[-1] = True  # index -1 of the mask: IMMEDIATE operands
    keep = (ops != CONST) | used[:-1]
    keep[-1] = True
    new_index = np.cumsum(keep) - 1
    registered = args >= 0
    args[registered] = new_index[args[registered]]
    unused = np.arange(2)[None, :] >= ARITY[ops][:, None]
    args[unused] = 0
    return ops[keep], args[keep], consts[keep]


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


def value_branches(params: Any = None) -> list[Callable[..., Any]]:
    """Branches ``(a, b, const, x, y, z) → value``: the op table's value rules on lanes of
    points (the leaf kernel's pixels, the value scan's points). An atom's ``const`` is its
    row of ``params`` (a table, as :class:`Tapes` holds it); an interpreter without one
    must refuse programs with atoms before it runs (their branch gives NaN)."""

    def source(code: int, c: Any, x: Any, y: Any, z: Any) -> Any:
        if code == CONST:
            return jnp.full_like(x, c)
        op = OPS[code]
        if op.source is not None:
            if params is None:
                return jnp.full_like(x, jnp.nan)
            return op.source(jnp, params[c.astype(jnp.int32)], x, y, jnp.full_like(x, z))
        return {VAR_X: x, VAR_Y: y, VAR_Z: jnp.full_like(x, z)}[code]

    def apply(op: Op, args: tuple[Any, ...], c: Any, x: Any, y: Any, z: Any) -> Any:
        assert op.rule is not None
        return op.rule(jnp, *args)

    return branches(apply, source)
