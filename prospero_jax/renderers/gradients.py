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
from prospero_jax.evaluators.tape import IMMEDIATE, Tapes
from prospero_jax.ir.ops import OPCODE
from prospero_jax.ir.program import Program
from prospero_jax.renderers.hierarchy import (
    LEAF_SIDE,
    SPLIT,
    next_tapes,
    prune_level,
    root_tape,
    tile_duals,
)
from prospero_jax.renderers.view import Progress, Target

#: Points per call of the gradient kernel.
CHUNK = 1 << 14
#: The longest program :func:`pixel_gradients` should take: beyond it the dual leaf
#: kernel's register file (rows × 4 × 1,024 lanes) passes 128 MiB.
TILE_GRADIENT_ROWS = 8192


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


def pixel_gradients(
    program: Program,
    xs: np.ndarray,
    ys: np.ndarray,
    z: Float[np.ndarray, "rows cols"],
    where: Target,
    leaf: int = LEAF_SIDE,
) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, "n 3"]]:
    """The value and gradient at every pixel ``(xs[col], ys[row], z[row, col])`` where ``z``
    is finite, in ``np.nonzero`` order: what :func:`gradients_at` gives there, computed on
    each ``leaf × leaf`` tile's pruned tape instead of the whole program.

    How: each tile's box (the hull of its points) prunes the program's tape with the
    culling kernel (only choices its intervals decide, so the tape's value and partials
    are the program's at every point of the box: the root is wrapped in ``add root 0``,
    whose need is the value, so no sign-only choice is taken), and the dual leaf kernel
    evaluates the pruned tape at the tile's points. A tile whose interval decides the
    sign keeps no tape and is evaluated on the whole one.
    """
    rows, cols = np.nonzero(np.isfinite(z))
    dtype = where.dtype
    if not len(rows):
        return np.empty(0, dtype), np.empty((0, 3), dtype)
    coords = np.stack([xs[cols], ys[rows], z[rows, cols]]).astype(dtype)  # (3, k)
    tile_of = (rows // leaf) * (-(-z.shape[1] // leaf)) + cols // leaf
    _, first, which = np.unique(tile_of, return_index=True, return_inverse=True)
    slot = (rows % leaf) * leaf + cols % leaf
    n = leaf * leaf
    points = np.repeat(coords[:, first].T[:, :, None], n, axis=2)  # unused slots: a real point
    points[which, :, slot] = coords.T
    tiles = len(first)

    with where.precision():
        root = root_tape(program, dtype)
        whole = Tapes(
            np.append(root.ops, OPCODE["add"]).astype(np.int32),
            np.concatenate([root.args, [[len(root) - 1, IMMEDIATE]]]).astype(np.int32),
            np.append(root.consts, 0).astype(root.consts.dtype),
            root.params,
        )
        length = len(whole)
        lanes = SPLIT[0] ** 2  # the root level's kernel, as a frame compiles it
        parents = -(-tiles // lanes)
        box = np.stack([points.min(axis=2), points.max(axis=2)], axis=2).reshape(tiles, 6)
        boxes = np.repeat(box[:1], parents * lanes, axis=0)
        boxes[:tiles] = box
        boxes = boxes.reshape(parents, lanes, 6).transpose(0, 2, 1)  # (parents, 6, lanes)
        repeated = whole.take(np.tile(np.arange(length), parents))
        level = prune_level(repeated, np.full(parents, length), boxes, where.device, length)
        lane, row = np.nonzero(level.emit.reshape(-1, lanes).T)
        pruned = next_tapes(repeated, row, level, row * lanes + lane)
        kept = level.kept.T.ravel()  # child (lane, parent), lane-major like ``pruned``
        starts = np.concatenate([[0], np.cumsum(kept)[:-1]])
        child = (np.arange(tiles) % lanes) * parents + np.arange(tiles) // lanes
        own = kept[child] > 0
        lengths = np.where(own, kept[child], length)
        pairs = zip(pruned[:3], whole[:3], strict=True)
        ops, args, consts = (np.concatenate([p, w]) for p, w in pairs)
        source = Tapes(ops, args, consts, root.params)
        begin = np.where(own, starts[child], len(pruned))  # the whole tape follows ``pruned``
        index = np.repeat(begin - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        out = tile_duals(source.take(index), lengths, points, where)  # (tiles, 4, n)
    value = out[which, 0, slot]
    gradient = out[which, 1:, slot]
    return value, gradient
