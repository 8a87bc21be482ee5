"""The scan interpreter: values (and tangents) of a tape held as data.

Input: a Program, packed once into register-allocated arrays
(:class:`~prospero_jax.evaluators.tape.RegisterTape`);
its constants as an array; points ``x, y, z`` and their tangents.
Output: the value at every point and its derivative along the tangents (forward mode,
:func:`scan` with ``dual=True``), or the value alone (``dual=False``, the ``interpreter`` compile
strategy of :mod:`prospero_jax.benchmarks.strategies`).

Why it exists: JAX's derivative of the unrolled closure is a graph twice the tape's size
that XLA compiles superlinearly (``../shared/README.md``: value + jvp of the first 2,000
instructions of prospero, 17.8 s; of all of it, unfinished after 12.5 minutes). Here the
tape is data: :func:`scan` is one ``lax.scan`` step per instruction, dispatched by
``lax.switch`` over branches built from the op table's value and partials rules, on a
register file of ``count`` rows (:func:`prospero_jax.ir.passes.allocate_registers`: 192
for prospero's 7,591 instructions). The compiled code depends on the op table, the
register, tape length and constant count buckets (powers of two) and the dtype, never on
the program's contents, so it compiles in about a second for any program.

Invariants:

* the tangent is linear in the input tangents and built from ``lax`` primitives that
  JAX can transpose (``scan``, ``switch``, ``dynamic_slice``, ``dynamic_update_slice``),
  so ``jax.grad`` through it works: JAX splits the scan into a forward pass that saves
  each step's operands and a transposed scan that runs the tape backwards;
* padding rows (up to the length bucket) write a scratch register nobody reads;
* values equal the unrolled closure's (same rules, same dtype), up to XLA's fusion of
  float32 division and transcendental functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from prospero_jax.evaluators.tape import branches, bucket, registers, value_branches
from prospero_jax.evaluators.unroll import dual_step
from prospero_jax.ir.ops import CONST, VAR_X, VAR_Y, VAR_Z, Op
from prospero_jax.ir.program import Program, refuse_atoms


def dual_branches() -> list[Callable[..., Any]]:
    """Branches ``(a, b, c, x, y, z) → (value, tangent)`` on dual numbers: every argument
    is a pair ``(value, tangent)`` of arrays of the lanes' shape."""

    def source(code: int, c: Any, x: Any, y: Any, z: Any) -> Any:
        if code == CONST:
            return jnp.broadcast_to(c[0], x[0].shape), jnp.broadcast_to(c[1], x[1].shape)
        if code not in (VAR_X, VAR_Y, VAR_Z):  # an atom: refused before (no derivatives)
            return jnp.full_like(x[0], jnp.nan), jnp.full_like(x[1], jnp.nan)
        return {VAR_X: x, VAR_Y: y, VAR_Z: z}[code]

    def apply(op: Op, args: tuple[Any, ...], c: Any, x: Any, y: Any, z: Any) -> Any:
        return dual_step(op, jnp, *args)

    return branches(apply, source)


Lanes = Float[Array, " n"]


@functools.partial(jax.jit, static_argnames=("registers", "dual"))
def scan(
    tape: tuple[jax.Array, ...],
    root: jax.Array,
    constants: Any,
    points: tuple[Any, Any, Any],
    *,
    registers: int,
    dual: bool,
) -> Any:
    """The tape at ``n`` points (flat lanes), one ``lax.scan`` step a row.

    ``tape`` is :attr:`RegisterTape.rows` and ``root`` its root register, both data.
    Values: ``constants`` is an array, ``points`` three lane arrays; the result is the
    value. ``dual=True``: every one of them is a pair ``(value, tangent)`` (constants and
    their tangents, each point and its tangent), and so is the result. The register file
    is the same pytree: one array of ``registers`` rows, or a pair of them.
    """
    rules = dual_branches() if dual else value_branches()
    lanes, dtype = (points[0][0].shape, points[0][0].dtype) if dual else (
        points[0].shape, points[0].dtype)  # fmt: skip

    def step(regs: Any, row: tuple[jax.Array, ...]) -> Any:
        op, a, b, dst, k = row
        va = jax.tree.map(lambda r: r[a], regs)
        vb = jax.tree.map(lambda r: r[b], regs)
        c = jax.tree.map(lambda v: v[k], constants)
        out = lax.switch(op, rules, va, vb, c, *points)
        return jax.tree.map(lambda r, v: r.at[dst].set(v), regs, out), None

    zero = jnp.zeros((registers, *lanes), dtype)
    file, _ = lax.scan(step, (zero, zero) if dual else zero, tape)
    return jax.tree.map(lambda r: r[root], file)


def value_function(program: Program) -> Callable[..., jax.Array]:
    """``g(x, y, z) → value`` by :func:`scan`: points of one shape and dtype."""
    refuse_atoms(program, "the value scan interpreter")
    tape = registers(program)
    arrays = tape.rows
    constants = program.constants
    padded = np.zeros(bucket(constants.size, 16))
    padded[: constants.size] = constants

    def evaluate(x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
        with np.errstate(over="ignore"):
            c = jnp.asarray(padded.astype(x.dtype))
        flat = tuple(p.reshape(-1) for p in (x, y, z))
        root = np.int32(tape.root)
        value = scan(arrays, root, c, flat, registers=tape.registers, dual=False)
        out: jax.Array = value.reshape(x.shape)
        return out

    return evaluate


def dual_function(program: Program) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """``g(constants, (x, y, z), d_constants, (dx, dy, dz)) → (value, tangent)``.

    Points and tangents are arrays of one shape and dtype (any shape; flattened inside);
    constants are in the program's order of ``const`` rows.
    """
    refuse_atoms(program, "the dual interpreter (derivatives)")
    tape = registers(program)
    arrays = tape.rows

    def evaluate(
        constants: jax.Array,
        points: tuple[jax.Array, ...],
        d_constants: jax.Array,
        d_points: tuple[jax.Array, ...],
    ) -> tuple[jax.Array, jax.Array]:
        shape = points[0].shape
        pad = (0, bucket(constants.shape[0], 16) - constants.shape[0])  # few shapes
        constants, d_constants = jnp.pad(constants, pad), jnp.pad(d_constants, pad)
        pairs = tuple((p.reshape(-1), t.reshape(-1)) for p, t in zip(points, d_points, strict=True))
        value, tangent = scan(
            arrays, np.int32(tape.root), (constants, d_constants), pairs,
            registers=tape.registers, dual=True,
        )  # fmt: skip
        return value.reshape(shape), tangent.reshape(shape)

    return evaluate
