"""The dual kernel: a value and its gradient by dual numbers, each tape at its own
points, in one XLA call for many tapes.

Input: tapes packed as arrays (:class:`~prospero_jax.evaluators.tape.Tapes`, each a
``(start, length)`` span), pruned for values, not signs (see
:func:`prospero_jax.renderers.gradients.grouped_gradients`), and each tape's ``n`` points.
Output: :func:`dual_leaf_kernel`, each point's value and partial derivatives in x, y and
z, or its unit normal (:func:`unit_vectors`).

Invariants: the op table's partials, through
:func:`~prospero_jax.evaluators.unroll.dual_step` (three tangents at once), dispatched
with ``lax.switch`` over branches that read their own operands
(:func:`~prospero_jax.evaluators.kernel_rows.reading`): one compilation serves every
program; a tape holding an atom (no partials) gives NaN.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from prospero_jax.evaluators.kernel_rows import (
    COMPILER_OPTIONS,
    branch_of,
    get_row,
    reading,
    row_operands,
    set_row,
)
from prospero_jax.evaluators.scan import dual_branches
from prospero_jax.evaluators.tape import Tapes


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
        row = get_row(regs, i)
        return row[0], row[1:]

    def constant(c: Any) -> tuple[jax.Array, jax.Array]:  # c: (constant, its tangent)
        return jnp.full(n, c[0]), zero

    rules = reading(dual_branches(), read, constant)
    basis = jnp.eye(3, dtype=dtype)[:, :, None] * jnp.ones(n, dtype)  # d(x, y, z)/d(x, y, z)
    tiles = starts.shape[0]

    def tile(t: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        regs, out = state  # registers carried across tiles, never cleared (see above)
        start, length = starts[t], lengths[t]
        inputs = tuple((points[t, k], basis[k]) for k in range(3))

        def step(i: jax.Array, regs: jax.Array) -> jax.Array:
            op, c = ops[start + i], consts[start + i]
            a, b, imm_a, imm_b = row_operands(args[start + i])
            kind = branch_of(op, imm_a, imm_b)
            v, d = lax.switch(kind, rules, regs, a, b, (c, jnp.zeros((), dtype)), *inputs)
            return set_row(regs, i, jnp.concatenate([v[None], d]))

        regs = lax.fori_loop(0, length, step, regs)
        duals = get_row(regs, length - 1)
        if where is None:
            return regs, set_row(out, t, duals)
        return regs, set_row(out, t, unit_vectors(duals[1:], where[t], turn).T)

    shape = (tiles, 4, n) if where is None else (tiles, n, 3)
    state = (jnp.zeros((registers, 4, n), dtype), jnp.zeros(shape, dtype))
    out: jax.Array = lax.fori_loop(0, count, tile, state)[1]
    return out.reshape(-1) if where is None else out
