"""Values and gradients at points: the one evaluator of ∇f that renderers share.

Input: a Program, points ``(x[i], y[i], z[i])`` and a :class:`~prospero_jax.renderers.view.
Target`.
Output: the value and the gradient ``(∂f/∂x, ∂f/∂y, ∂f/∂z)`` at each point, in the target's
dtype: what gradient images (:mod:`~prospero_jax.renderers.shade`), heightmap normals
(:mod:`~prospero_jax.renderers.heightmap`) and mesh vertices' Newton steps
(:mod:`~prospero_jax.renderers.mesh`) read.

How: forward mode through :func:`prospero_jax.to_function`'s custom derivatives (the op
table's partials, the dual step's rules: finite wherever the value is), three tangent
directions at once; points in chunks of :data:`CHUNK`, the last one padded, so one
compilation serves a program at any number of points. Values and derivatives are the
program's as given (never a sign program).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from prospero_jax.evaluators.lower import to_function
from prospero_jax.ir.program import Program
from prospero_jax.renderers.view import Progress, Target

#: Points per call of the gradient kernel.
CHUNK = 1 << 14


@functools.lru_cache(maxsize=16)
def gradient_kernel(program: Program) -> Callable[..., Any]:
    """Jitted ``(x, y, z) → (value, gradient[3, ...])`` by forward mode, three directions."""
    field = to_function(program)

    @jax.jit
    def kernel(x: jax.Array, y: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        def along(direction: jax.Array) -> tuple[jax.Array, jax.Array]:
            tangents = tuple(jnp.full_like(x, d) for d in direction)
            return jax.jvp(field, (x, y, z), tangents)

        basis = jnp.eye(3, dtype=x.dtype)
        value, gradient = jax.vmap(along, out_axes=(None, 0))(basis)
        return value, gradient

    return kernel


def gradients_at(
    program: Program,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    where: Target,
    progress: Progress | None = None,
) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, "n 3"]]:
    """The value and gradient (∂f/∂x, ∂f/∂y, ∂f/∂z) at the points ``(x[i], y[i], z[i])``,
    by forward mode through the op table's partials, in chunks of :data:`CHUNK` points
    (one compilation per program); ``progress(done, total)`` counts chunks."""
    dtype = where.dtype
    px, py, pz = (np.asarray(v, np.float64).astype(dtype) for v in (x, y, z))
    value = np.empty(len(px), dtype)
    gradient = np.empty((len(px), 3), dtype)
    chunks = -(-len(px) // CHUNK)
    with where.precision():
        kernel = gradient_kernel(program)
        for i in range(chunks):
            part = slice(i * CHUNK, (i + 1) * CHUNK)
            n = len(px[part])
            x_, y_, z_ = (
                jax.device_put(np.pad(v[part], (0, CHUNK - n), mode="edge"), where.device)
                for v in (px, py, pz)
            )
            v, g = kernel(x_, y_, z_)
            value[part] = np.asarray(v)[:n]
            gradient[part] = np.asarray(g)[:, :n].T
            if progress is not None:
                progress(i + 1, chunks)
    return value, gradient
