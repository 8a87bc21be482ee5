"""Stage 3, lowering: Program → a pure function of JAX arrays.

Input: a Program.
Output: ``f(x, y, z=0.0)``, a Python function that JAX can ``jit``, ``vmap``, ``grad``,
``jvp`` and ``linearize``: it evaluates the program's tape, one ``jax.numpy`` call per
instruction, on arrays of any broadcast-compatible shapes.

Invariants:

* ``f`` is pure: no side effects, no Python control flow on array values, so it traces
  once per input shape and dtype;
* the working dtype is that of the coordinates (float32 by default; float64 when they are
  float64, which needs ``jax_enable_x64``); constants are cast to it;
* the tape is simplified first (:func:`prospero_jax._passes.simplify`), which changes no
  value in float64; in float32 a folded constant is rounded once instead of per step;
* tracing keeps only live intermediates (see :mod:`prospero_jax._unroll`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from prospero_jax import _passes
from prospero_jax._tape import Program
from prospero_jax._unroll import plan, run

Field = Callable[..., Float[Array, "..."]]


def to_function(program: Program, *, simplify: bool = True) -> Field:
    """Return ``f(x, y, z=0.0)``, the program's value at the points ``(x, y, z)``.

    ``x``, ``y`` and ``z`` are scalars or arrays that broadcast together; the result has
    their broadcast shape and their floating dtype (integers are promoted to float).
    ``simplify=False`` lowers the tape exactly as written.
    """
    tape = _passes.simplify(program) if simplify else program
    steps = plan(tape)

    def field(
        x: Float[ArrayLike, "..."], y: Float[ArrayLike, "..."], z: Float[ArrayLike, "..."] = 0.0
    ) -> Float[Array, "..."]:
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        dtype = jnp.promote_types(jnp.result_type(x, y, z), jnp.float32)
        x, y, z = x.astype(dtype), y.astype(dtype), z.astype(dtype)
        value = run(steps, jnp, x, y, z, lambda c: _constant(c, dtype))
        return jnp.broadcast_to(value, jnp.broadcast_shapes(x.shape, y.shape, z.shape))

    field.__name__ = field.__qualname__ = "vm_field"
    field.__doc__ = f"Value of {program.source} ({len(tape)} instructions) at (x, y, z)."
    return field


def _constant(value: float, dtype: np.dtype) -> np.ndarray:
    """``value`` in the working dtype; beyond its range it becomes ±inf (IEEE rounding)."""
    with np.errstate(over="ignore"):
        return np.asarray(value, dtype)
