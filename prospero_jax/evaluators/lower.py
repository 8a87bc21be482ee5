"""Lowering: Program → a pure, differentiable function of JAX arrays.

Input: a Program.
Output: a *field*: ``f(x, y, z=0.0)`` (:func:`to_function`), or ``f(constants, x, y,
z=0.0)`` with the program's constants as an argument (:func:`to_parametric`). Values are
one ``jax.numpy`` call per instruction, unrolled (XLA fuses them); derivatives come from
the op table's partials rules through a ``jax.custom_jvp``, evaluated unrolled for short
tapes and by the dual interpreter (:mod:`prospero_jax.evaluators.scan`) for long ones, whose
compile time does not grow with the tape.

Invariants:

* a field is pure: no side effects, no Python control flow on array values, so it traces
  once per input shape and dtype, and composes with ``jit``, ``vmap``, ``grad``,
  ``jvp``, ``jacfwd`` and ``jacrev``;
* the working dtype is that of the coordinates and constants, at least float32 (float64
  needs ``jax_enable_x64``); the result has the points' broadcast shape;
* derivatives follow the op table's conventions where they do not exist (``min``/``max``
  ties: the mean; ``sqrt`` at 0: 0; see :mod:`prospero_jax.ir.ops`), so they are finite
  wherever the values are;
* the compiled code computes every instruction as the op table says, in the working
  dtype: each value is *sealed* (:func:`sealed`), so XLA's algebraic simplifier cannot
  rewrite across instructions (it would reassociate ``(a + c1) + c2`` into ``a + (c1 +
  c2)``, turn ``a / b`` into ``a * (1 / b)``, whose reciprocal underflows for ``|b| >
  2**126``, or ``(a / b) / c`` into ``a / (b * c)``, which overflows), under our jits and
  under a caller's own ``jax.jit`` alike. XLA:CPU still fuses the whole tape into one
  loop; XLA:GPU does not (a kernel per instruction), so ``to_function(..., seal=False)``
  drops the seal, and a jit with XLA's algebraic simplifier off keeps the invariant
  without it (brute force off CPU, unless exact: ``renderers.brute.NO_REWRITES``);
* each product (``mul``, ``square``) is rounded on its own, as the interpreters round it:
  a −0.0 that depends on ``z`` is added to it (:func:`unseen_zero`), else XLA:CPU fuses
  a product and the sum that uses it into one multiply-add (culled ≠ brute force within
  an ulp of 0, exact or not); free where ``z`` is a constant;
* :func:`to_function` simplifies the tape first (no value changes in float64; in
  float32 a folded constant is rounded once instead of per step); :func:`to_parametric`
  keeps every instruction, so its constants are exactly the program's.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from prospero_jax.evaluators.scan import dual_function
from prospero_jax.evaluators.unroll import plan, run
from prospero_jax.ir import passes as _passes
from prospero_jax.ir.program import Program

Field = Callable[..., Float[Array, "..."]]
Derivatives = Literal["auto", "unrolled", "interpreter"]
#: Longest tape whose derivatives ``"auto"`` unrolls; longer ones use the interpreter.
#: (XLA compiles an unrolled value + jvp of 250 instructions in ~0.5 s, of 1,000 in ~7 s.)
UNROLL_LIMIT = 256


def to_function(
    program: Program,
    *,
    simplify: bool = True,
    derivatives: Derivatives = "auto",
    seal: bool = True,
) -> Field:
    """Return ``f(x, y, z=0.0)``, the program's value at the points ``(x, y, z)``.

    ``x``, ``y`` and ``z`` are scalars or arrays that broadcast together; the result has
    their broadcast shape and their floating dtype (integers are promoted to float).
    ``simplify=False`` lowers the tape exactly as written. ``derivatives`` picks how JAX
    differentiates it: ``"unrolled"`` (fast to run, slow to compile for long tapes),
    ``"interpreter"`` (compiles in about a second for any tape), or ``"auto"`` (unrolled
    up to :data:`UNROLL_LIMIT` instructions). ``seal=False`` leaves the values unsealed
    (:func:`sealed`): XLA may then rewrite across instructions (reassociate, divide by a
    reciprocal: hostile constants then change the image) unless the caller's ``jax.jit``
    passes ``compiler_options={"xla_disable_hlo_passes": "algsimp"}``, as the renderers
    do; on a GPU XLA then fuses the tape into tens of kernels instead of one per
    instruction (prospero at 1024², the whole image at once, on an H200: 1.1 ms against
    21 ms; on CPU the sealed tape is already one loop).
    """
    tape = _passes.simplify(program) if simplify else program
    parametric = _parametric_core(tape, derivatives, baked=True, seal=seal)
    constants = tape.constants

    def field(
        x: Float[ArrayLike, "..."], y: Float[ArrayLike, "..."], z: Float[ArrayLike, "..."] = 0.0
    ) -> Float[Array, "..."]:
        dtype = jnp.promote_types(jnp.result_type(x, y, z), jnp.float32)
        return parametric(constant_array(constants, dtype), x, y, z)

    field.__name__ = field.__qualname__ = "vm_field"
    field.__doc__ = f"Value of {program.source} ({len(tape)} instructions) at (x, y, z)."
    return field


def to_parametric(
    program: Program, *, derivatives: Derivatives = "auto"
) -> tuple[Field, Float[Array, " constants"]]:
    """Return ``(f, constants)``: ``f(constants, x, y, z=0.0)`` and the program's constants.

    ``constants`` holds the value of every ``const`` instruction, in tape order (as
    ``program.constants``), in JAX's default float dtype; ``f`` evaluates the program with
    those replaced by its first argument, so ``jax.grad(f)`` differentiates with respect
    to them. Write fitted values back with ``program.with_constants(values)``.
    """
    f = _parametric_core(program, derivatives, baked=False)
    f.__doc__ = f"Value of {program.source} at (x, y, z) with the given constants."
    return f, jnp.asarray(program.constants)


class Shaped(NamedTuple):
    """A program's code apart from its numbers (:func:`to_shaped`)."""

    key: str  # the simplified tape's opcodes and operands, digested
    field: Callable[..., Array]  # field(numbers, x, y, z)
    numbers: tuple[np.ndarray, np.ndarray]  # its constants, its atoms' numbers (float64)


def to_shaped(program: Program, *, seal: bool = True) -> Shaped:
    """``program``'s field with its numbers as an argument: ``field((constants, params), x,
    y, z)`` is ``to_function(program, seal=seal)(x, y, z)`` bit for bit when given
    ``numbers`` in the points' dtype (:func:`constant_array`), and the same code serves
    every program of the same ``key``: its simplified tape's opcodes and operands, not its
    constants' values nor its atoms' numbers (simplified with no two equal numbers merged:
    a view turned by a multiple of 90° has entries 0 and ±1 equal to the program's own,
    and merged, they gave it a shape of its own and a compile, ~0.3 s of the bear's). So
    one compilation of ``field`` serves every turned view of a solid (each view's posed
    program differs from the last in its numbers only)."""
    tape = _passes.simplify(program, by_value=False)  # a key of the structure alone
    steps = functools.cache(lambda: plan(tape))  # planned when first traced: only to compile
    digest = hashlib.sha256(tape.opcodes.tobytes() + tape.args.tobytes())
    digest.update(str(tape.params.shape).encode())

    def field(numbers: tuple[Array, Array], x: ArrayLike, y: ArrayLike, z: ArrayLike) -> Array:
        consts, params = numbers
        dtype = jnp.promote_types(jnp.result_type(x, y, z), jnp.float32)
        px, py, pz = jnp.broadcast_arrays(*(jnp.asarray(v, dtype) for v in (x, y, z)))
        hide = sealed(px.shape) if seal else None
        constant, atom = (lambda k, _: consts[k]), (lambda k, _: params[k])
        value = run(steps(), jnp, px, py, pz, constant, hide, atom, unseen_zero(pz))
        return jnp.broadcast_to(value, px.shape)

    return Shaped(digest.hexdigest()[:32], field, (tape.constants, tape.params))


def _parametric_core(
    program: Program, derivatives: Derivatives, *, baked: bool, seal: bool = True
) -> Field:
    """``f(constants, x, y, z)`` with custom derivatives (see the module docstring).

    ``baked``: the value closure uses the program's own constants as literals (XLA folds
    them) and ignores its first argument, which only the derivatives read. ``seal``: each
    value sealed (:func:`sealed`), as the module's invariants say, or not.
    """
    if derivatives not in ("auto", "unrolled", "interpreter"):
        raise ValueError(f"derivatives must be auto, unrolled or interpreter: {derivatives!r}")
    values = plan(program)
    unroll = derivatives == "unrolled" or (derivatives == "auto" and len(program) <= UNROLL_LIMIT)

    @functools.cache
    def dual() -> Callable[..., tuple[Array, Array]]:  # planned when first differentiated
        return _unrolled_dual(program) if unroll else dual_function(program)

    @jax.custom_jvp
    def core(constants: Array, x: Array, y: Array, z: Array) -> Array:
        hide, zero = sealed(x.shape) if seal else None, unseen_zero(z)
        if baked:
            value = run(
                values, jnp, x, y, z, lambda _, c: constant_array(c, x.dtype), hide, None, zero
            )
        else:
            value = run(values, jnp, x, y, z, lambda k, _: constants[k], hide, None, zero)
        return jnp.broadcast_to(value, x.shape)

    @core.defjvp
    def core_jvp(primals: tuple[Array, ...], tangents: tuple[Array, ...]) -> Any:
        constants, *points = primals
        d_constants, *d_points = tangents
        return dual()(constants, tuple(points), d_constants, tuple(d_points))

    def field(
        constants: Float[ArrayLike, " k"],
        x: Float[ArrayLike, "..."],
        y: Float[ArrayLike, "..."],
        z: Float[ArrayLike, "..."] = 0.0,
    ) -> Float[Array, "..."]:
        c, *points = (jnp.asarray(v) for v in (constants, x, y, z))
        dtype = jnp.promote_types(jnp.result_type(*points), jnp.float32)
        if c.shape != (program.constants.size,):
            raise ValueError(
                f"expected {program.constants.size} constants, got an array of shape {c.shape}"
            )
        px, py, pz = jnp.broadcast_arrays(*(p.astype(dtype) for p in points))
        return core(c.astype(dtype), px, py, pz)

    field.__name__ = field.__qualname__ = "vm_parametric_field"
    return field


def _unrolled_dual(program: Program) -> Callable[..., tuple[Array, Array]]:
    """The dual-number closure: value and tangent, one pair of jnp calls per instruction."""
    steps = plan(program, rules="dual")

    def dual(
        constants: Array, points: tuple[Array, ...], d_constants: Array, d_points: tuple[Array, ...]
    ) -> tuple[Array, Array]:
        x, y, z = zip(points, d_points, strict=True)
        constant = lambda k, _: (constants[k], d_constants[k])  # noqa: E731
        value, tangent = run(steps, jnp, x, y, z, constant, sealed(points[0].shape))
        shape = points[0].shape
        return jnp.broadcast_to(value, shape), jnp.broadcast_to(tangent, shape)

    return dual


def sealed(shape: tuple[int, ...]) -> Callable[[Any], Any]:
    """A ``seal`` for :func:`prospero_jax.evaluators.unroll.run`: each value broadcast to ``shape``
    and passed through ``lax.optimization_barrier``.

    XLA's algebraic simplifier runs before it removes the barriers, so it sees each
    instruction's operands as opaque full-size arrays and cannot combine instructions
    (it does not look through a barrier), nor treat a divisor as a broadcast or a
    constant (``A / broadcast(B)`` becomes ``A * broadcast(1 / B)``). The barriers are
    gone before fusion, so the compiled loop is the same single fusion and runs as fast
    (prospero, 256² tiles: 85 ms either way; tracing takes ~0.5 s longer). Works on
    pytrees (interval and dual pairs) and under ``vmap``.
    """

    def seal(value: Any) -> Any:
        return jax.tree.map(lambda v: _barrier(jnp.broadcast_to(v, shape)), value)

    return seal


def unseen_zero(z: Array) -> Array:
    """A −0.0 of ``z``'s shape that XLA and LLVM cannot prove is one while ``z`` is a
    run-time value (``-(|z| · 0)``, or −0.0 outright where ``z`` is not finite and that
    product would be NaN):
    added to each product (:func:`~prospero_jax.evaluators.unroll.run`), it keeps XLA:CPU
    from contracting the product and the sum that uses it into one fused multiply-add,
    which rounds once where the interpreters round twice (culled ≠ brute force at ``x · y
    + z`` within an ulp of 0; tests/test_ops.py). Free when ``z`` is a constant (XLA then
    folds ``v + -0.0`` to ``v``); one add a product a point when it is not."""
    return jnp.where(jnp.isfinite(z), -(jnp.abs(z) * 0), -0.0).astype(z.dtype)


#: ``lax.optimization_barrier``, typed (JAX leaves it untyped).
_barrier = cast(Callable[[Array], Array], lax.optimization_barrier)


def constant_array(values: np.ndarray | float, dtype: Any) -> np.ndarray:
    """``values`` in the working dtype; beyond its range they become ±inf (IEEE rounding)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype)
