"""Compilation strategies: Program → a tile function, lowered one of four ways.

Input: a Program and a strategy name (:data:`STRATEGIES`).
Output: a *tile function* ``(xs[t], ys[t], z) → uint8[t, t]``, 255 where the value at
``(xs[col], ys[row])`` is < 0 — the unit of work of the brute-force renderer
(:func:`prospero_jax.renderers.brute.render_tiles`) — and whether it is meant to be jitted.

The strategies differ only in what XLA is given to compile:

* ``unrolled``: one ``jax.numpy`` call per instruction (:func:`prospero_jax.to_function`,
  what ``render(mode="brute")`` uses). XLA fuses the whole tape into one loop fusion:
  no intermediate touches memory, but compile time grows faster than the tape;
* ``chunked``: the same calls, cut every ``chunk`` instructions into separately jitted
  functions that take and return the values alive at the cut: XLA compiles many small
  modules instead of one large one, and each cut writes the live values to memory.
  (An ``optimization_barrier`` inside one jit does not do this: XLA:CPU removes it before
  fusion, and the compiled module is one fusion again; and nested jits are inlined.) The
  tile function is a host loop over the compiled pieces, so it is not jitted itself;
* ``interpreter``: the tape as data (:func:`prospero_jax.evaluators.scan.scan`, ``lax.scan``
  over rows, ``lax.switch`` over the op table): the compiled code does not depend on the
  program, only on power-of-two buckets of its size, so it compiles in about a second for
  any tape, and every row reads and writes a register file in memory;
* ``eager``: no ``jit``: each instruction is its own XLA computation, dispatched from
  Python one after the other (JAX's op-by-op mode; the challenge seed's CuPy approach of
  one kernel per instruction). Not jitted, so nothing is fused and each op is compiled
  once per shape and then cached.

Invariant: every strategy computes the op table's value rules in the working dtype, each
instruction as written (sealed from XLA's algebraic rewrites:
:func:`prospero_jax.evaluators.lower.sealed`),
so they give the oracle's image up to rounding where ``|value|`` is tiny (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from prospero_jax.evaluators.lower import constant_array, sealed
from prospero_jax.evaluators.scan import value_function
from prospero_jax.evaluators.unroll import Step, live_after, plan, run, run_steps
from prospero_jax.ir import passes as _passes
from prospero_jax.ir.program import Program
from prospero_jax.renderers.brute import TileFunction, unrolled_tile
from prospero_jax.renderers.view import to_pixels

STRATEGIES = ("unrolled", "chunked", "interpreter", "eager")
#: Instructions per fusion in the ``chunked`` strategy, by default.
CHUNK = 2048


class Kernel(NamedTuple):
    """A tile function and whether to ``jax.jit`` it (all but ``eager``)."""

    function: TileFunction
    jit: bool


def _inside(value: jax.Array) -> jax.Array:
    return to_pixels(value, jnp)


def tile_kernel(program: Program, strategy: str = "unrolled", *, chunk: int = CHUNK) -> Kernel:
    """The tile function of ``program`` lowered by ``strategy`` (see the module docstring).

    The program is simplified first, as :func:`prospero_jax.to_function` does.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 instruction, got {chunk}")
    if strategy == "unrolled":
        return Kernel(unrolled_tile(program), jit=True)

    tape = _passes.simplify(program)
    if strategy == "interpreter":
        evaluate = value_function(tape)

        def interpreted(xs: jax.Array, ys: jax.Array, z: jax.Array) -> jax.Array:
            x, y = jnp.meshgrid(xs, ys)
            return _inside(evaluate(x, y, jnp.broadcast_to(z, x.shape)))

        return Kernel(interpreted, jit=True)

    steps = plan(tape)
    if strategy == "eager":

        def eager(xs: jax.Array, ys: jax.Array, z: jax.Array) -> jax.Array:
            # Each op is its own computation: full-size operands are all it needs to
            # compute what the op table says (no broadcast divisor; see _lower.sealed).
            shape = (ys.shape[0], xs.shape[0])
            full = lambda v: jnp.broadcast_to(v, shape)  # noqa: E731
            value = run(steps, jnp, xs[None, :], ys[:, None], z, _constant(xs), full)
            return _inside(value)

        return Kernel(eager, jit=False)

    pieces = _chunks(steps, chunk)

    def chunked(xs: jax.Array, ys: jax.Array, z: jax.Array) -> jax.Array:
        values: dict[int, jax.Array] = {}
        for piece in pieces:
            values = piece(values, xs, ys, z)
        return values[-1]

    return Kernel(chunked, jit=False)


def _constant(like: jax.Array) -> Callable[[int, float], Any]:
    return lambda _, c: constant_array(c, like.dtype)


def _chunks(steps: tuple[Step, ...], chunk: int) -> list[Callable[..., dict[int, jax.Array]]]:
    """Jitted pieces ``(alive before, xs, ys, z) → alive after`` of ``chunk`` steps each.

    The last piece returns ``{-1: tile}``, the uint8 tile.
    """
    stops = [*range(chunk, len(steps), chunk), len(steps)]
    starts = [0, *stops[:-1]]
    return [
        jax.jit(_piece(steps, start, stop, keep))
        for start, stop, keep in zip(starts, stops, live_after(steps, stops), strict=True)
    ]


def _piece(
    steps: tuple[Step, ...], start: int, stop: int, keep: tuple[int, ...]
) -> Callable[..., dict[int, jax.Array]]:
    """Steps ``start`` to ``stop - 1`` as a function of the values alive before them."""

    def piece(
        values: dict[int, jax.Array], xs: jax.Array, ys: jax.Array, z: jax.Array
    ) -> dict[int, jax.Array]:
        inputs = (xs[None, :], ys[:, None], z)
        seal = sealed((ys.shape[0], xs.shape[0]))
        out = run_steps(steps, start, stop, values, jnp, inputs, _constant(xs), seal)
        if stop == len(steps):
            return {-1: _inside(jnp.broadcast_to(out[stop - 1], (ys.shape[0], xs.shape[0])))}
        return {j: jnp.asarray(out[j]) for j in keep}

    return piece
