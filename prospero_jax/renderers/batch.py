"""Batched renders: one program, many sets of constants → a stack of images.

Input: a Program and a ``(B, K)`` array of constants (``K = program.constants.size``, in
tape order, as :func:`prospero_jax.to_parametric` takes them), an image size and the
options of :func:`prospero_jax.render`. Output: ``(B, N, N)`` uint8 images, image ``b``
equal to rendering ``program.with_constants(constants[b])``.

How, by mode:

* ``brute``: the parametric closure (:func:`prospero_jax.to_parametric`, constants as an
  argument instead of literals) is ``vmap``-ed over the batch inside one jitted tile
  kernel, so each tile of every frame comes from one XLA computation, compiled once per
  program and batch size whatever the constants (an accelerator's natural path).
* ``culled``: each set of constants becomes its own program, rendered by the culled
  renderer; its kernels take tapes as data, so no set compiles anything.
* ``auto``: :func:`~prospero_jax.renderers.view.culls`'s rule, as for one image.

Pixel differences between the modes are those between brute force and culling (none on
prospero and the shared models), plus, in brute force only, float32 rounding that XLA may
do differently when a constant is a runtime value rather than a literal it can fold: only
where the value is within a few ulps of 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Unpack

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jaxtyping import ArrayLike, Float, UInt8

from prospero_jax.evaluators.lower import to_parametric
from prospero_jax.ir.program import Program
from prospero_jax.renderers.brute import render_tiles
from prospero_jax.renderers.culled import render_culled
from prospero_jax.renderers.sharding import line_mesh, pad_to
from prospero_jax.renderers.view import (
    InvalidView,
    Progress,
    Shorthand,
    Target,
    View,
    check_memory,
    culls,
    resolve,
    to_pixels,
)


def sweep_constants(
    program: Program, name: str, values: Float[ArrayLike, " frames"]
) -> Float[np.ndarray, "frames constants"]:
    """Constants for a sweep: the program's own, with the ``const`` instruction ``name``
    (its id in the `.vm` file, e.g. ``_1a``) set to each of ``values`` in turn."""
    if name not in program.ids:
        raise ValueError(f"{program.source}: no instruction named {name!r}")
    if name not in program.constant_ids:
        raise ValueError(f"{program.source}: {name} is not a const instruction")
    index = program.constant_ids.index(name)
    column = np.atleast_1d(np.asarray(values, np.float64))
    table = np.repeat(program.constants[None, :], len(column), axis=0)
    table[:, index] = column
    return table


def render_batch(
    program: Program,
    constants: Float[ArrayLike, "batch constants"],
    size: int | View = 1024,
    *,
    mode: str = "auto",
    progress: Progress | None = None,
    **options: Unpack[Shorthand],
) -> UInt8[np.ndarray, "batch height size"]:
    """Render ``program`` once per row of ``constants`` (module docstring).

    What to draw and where to run are :func:`prospero_jax.render`'s. ``progress(done,
    total)`` counts tiles (brute) or images (culled). With several devices, brute force
    shards the frames over them (a 1-D mesh; each device renders its frames' share of
    every tile) and culling shards each image's work.
    """
    view, where = resolve(size, options)
    if view.rotation is not None:
        raise InvalidView(
            "rotation",
            "render_batch sets the constants of the program as written: render turned "
            "views one at a time with render",
        )
    table = np.asarray(constants, np.float64)
    if table.ndim != 2 or table.shape[1] != program.constants.size:
        raise ValueError(
            f"expected constants of shape (batch, {program.constants.size}), got {table.shape}"
        )
    check_memory(len(table) * view.height * view.size)
    frames = len(table)
    with where.precision():
        if culls(mode, where):
            images = []
            for done, row in enumerate(table, 1):
                images.append(render_culled(program.with_constants(row), view, where))
                if progress is not None:
                    progress(done, frames)
            return np.stack(images) if images else np.zeros((0, view.height, view.size), np.uint8)
        placement: NamedSharding | None = None
        destination: jax.Device | NamedSharding = where.device
        if where.devices:  # frames sharded over the devices; coordinates on all of them
            destination, placement = line_mesh(where.devices, "frames")
            table = np.stack(pad_to(list(table), len(where.devices)))
        values = jax.device_put(table.astype(where.dtype), destination)
        kernel = functools.partial(_batch_kernel(program), values)
        one = Target(where.dtype, where.device)  # the tile loop itself runs as on one device
        stack = render_tiles(kernel, view, one, progress=progress, placement=placement)
    return stack[:frames]


@functools.lru_cache(maxsize=8)
def _batch_kernel(program: Program) -> Callable[..., jax.Array]:
    """``(constants[B, K], xs[t], ys[t], z) → uint8[B, t, t]``: the vmapped closure, jitted."""
    field, _ = to_parametric(program)

    @jax.jit
    def kernel(constants: jax.Array, xs: jax.Array, ys: jax.Array, z: jax.Array) -> jax.Array:
        frames = jax.vmap(lambda c: field(c, xs[None, :], ys[:, None], z))(constants)
        return to_pixels(frames, jnp)

    return kernel
