"""Interval lowering: Program → a pure function of JAX intervals.

Input: a Program.
Output: ``g(x, y, z=Interval(0, 0))`` over :class:`Interval` pytrees ``(lo, hi)``, built by
running the unrolled evaluator with each op's interval rule from the op table.

Contract (soundness): for every point with ``x.lo <= px <= x.hi`` (and likewise y, z),
the program's value at that point, computed in the same dtype, lies in ``[lo, hi]`` of
the result, or the result has a NaN bound (meaning "unknown: the value may be NaN").
This closure is for small programs, tests and research; its compile time grows with the
tape (``../shared/README.md``: ~50 s for prospero). The renderer runs the same rules in a
tape interpreter instead (:mod:`prospero_jax.evaluators.cull`), and for solids whose tapes
nothing prunes :func:`to_shaped_intervals`' closure, which takes the program's numbers as
an argument (compiled per shape, as :func:`~prospero_jax.evaluators.lower.to_shaped`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from prospero_jax.evaluators.lower import sealed
from prospero_jax.evaluators.unroll import plan, run
from prospero_jax.ir import passes as _passes
from prospero_jax.ir.program import Program


class Interval(NamedTuple):
    """A closed interval ``[lo, hi]`` of arrays (a JAX pytree); NaN bounds: unknown."""

    lo: ArrayLike
    hi: ArrayLike


def to_interval_function(program: Program) -> Callable[..., Interval]:
    """Return ``g(x, y, z=Interval(0.0, 0.0))``: an interval around the program's values."""
    steps = plan(_passes.simplify(program), rules="interval")

    def interval_field(x: Interval, y: Interval, z: Interval | None = None) -> Interval:
        z = Interval(0.0, 0.0) if z is None else z
        bounds = [jnp.asarray(v) for v in (*x, *y, *z)]
        dtype = jnp.promote_types(jnp.result_type(*bounds), jnp.float32)
        xl, xh, yl, yh, zl, zh = (v.astype(dtype) for v in bounds)
        shape = jnp.broadcast_shapes(*(v.shape for v in (xl, xh, yl, yh, zl, zh)))
        lo, hi = run(
            steps,
            jnp,
            (xl, xh),
            (yl, yh),
            (zl, zh),
            lambda _, c: (np.asarray(c, dtype), np.asarray(c, dtype)),
            sealed(shape),  # no algebraic rewrites of bounds: they hold as computed
        )
        out_lo: Array = jnp.broadcast_to(lo, shape)
        out_hi: Array = jnp.broadcast_to(hi, shape)
        return Interval(out_lo, out_hi)

    return interval_field


class ShapedIntervals(NamedTuple):
    """A program's interval code apart from its numbers (:func:`to_shaped_intervals`)."""

    key: str  # the simplified tape's opcodes and operands, digested
    bounds: Callable[..., tuple[Array, Array]]  # bounds(numbers, box[6, ...]) → (lo, hi)
    numbers: tuple[np.ndarray, np.ndarray]  # its constants, its atoms' numbers (float64)


def to_shaped_intervals(program: Program) -> ShapedIntervals:
    """``program``'s interval field with its numbers as an argument: ``bounds((constants,
    params), box)`` over boxes ``box = [xlo, xhi, ylo, yhi, zlo, zhi]`` (each an array of
    one shape) is :func:`to_interval_function`'s ``(lo, hi)`` there (the module's
    soundness contract), each bound sealed (:func:`~prospero_jax.evaluators.lower.sealed`:
    no algebraic rewrites), and one compilation serves every program of the same key (its
    simplified tape's opcodes and operands)."""
    tape = _passes.simplify(program, by_value=False)  # a key of the structure alone
    steps = functools.cache(lambda: plan(tape, rules="interval"))  # planned when traced
    digest = hashlib.sha256(b"intervals" + tape.opcodes.tobytes() + tape.args.tobytes())
    digest.update(str(tape.params.shape).encode())

    def bounds(numbers: tuple[Array, Array], box: Array) -> tuple[Array, Array]:
        consts, params = numbers
        xl, xh, yl, yh, zl, zh = (box[i] for i in range(6))
        shape = xl.shape
        lo, hi = run(
            steps(), jnp, (xl, xh), (yl, yh), (zl, zh),
            lambda k, _: (consts[k], consts[k]), sealed(shape), lambda k, _: params[k],
        )  # fmt: skip
        return jnp.broadcast_to(lo, shape), jnp.broadcast_to(hi, shape)

    return ShapedIntervals(digest.hexdigest()[:32], bounds, (tape.constants, tape.params))
