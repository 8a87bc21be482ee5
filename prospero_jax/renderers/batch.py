"""Stage 4c, batched renders: one program, many sets of constants → a stack of images.

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
* ``auto``: culled on CPU, brute on accelerators, as :func:`prospero_jax.render` picks.

Pixel differences between the modes are those between brute force and culling (none on
prospero and the shared models), plus, in brute force only, float32 rounding that XLA may
do differently when a constant is a runtime value rather than a literal it can fold: only
where the value is within a few ulps of 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import ArrayLike, Float, UInt8

from prospero_jax.evaluators.lower import to_parametric
from prospero_jax.evaluators.reference import DEFAULT_REGION, check_z
from prospero_jax.ir.program import Program
from prospero_jax.renderers.brute import (
    MODES,
    Progress,
    render,
    render_tiles,
    resolve_device,
    resolve_devices,
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
    size: int = 1024,
    *,
    region: tuple[float, float, float, float] = DEFAULT_REGION,
    z: float = 0.0,
    dtype: str = "float32",
    device: str | jax.Device | None = None,
    devices: str | Sequence[jax.Device] | None = None,
    mode: str = "auto",
    progress: Progress | None = None,
) -> UInt8[np.ndarray, "batch size size"]:
    """Render ``program`` once per row of ``constants`` (module docstring).

    ``progress(done, total)`` counts tiles (brute) or images (culled). With several
    ``devices``, brute force shards the frames over them (a 1-D mesh; each device renders
    its frames' share of every tile) and culling shards each image's work.
    """
    table = np.asarray(constants, np.float64)
    z = check_z(z)
    if table.ndim != 2 or table.shape[1] != program.constants.size:
        raise ValueError(
            f"expected constants of shape (batch, {program.constants.size}), got {table.shape}"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    dev = resolve_device(device)
    culled = mode == "culled" or (mode == "auto" and dev.platform == "cpu")
    if culled:
        images = []
        for done, row in enumerate(table, 1):
            images.append(
                render(
                    program.with_constants(row), size, region=region, z=z, dtype=dtype,
                    device=dev, devices=devices, mode="culled",
                )
            )  # fmt: skip
            if progress is not None:
                progress(done, len(table))
        return np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    spread = resolve_devices(devices, dev)
    frames = len(table)
    if len(spread) > 1:  # frames sharded over the devices; coordinates on all of them
        mesh = Mesh(np.array(spread), ("frames",))
        table = np.concatenate([table, table[-1:].repeat(-frames % len(spread), axis=0)])
        frame_axis, everywhere = P("frames", None), P()  # type: ignore[no-untyped-call]
        where: jax.Device | NamedSharding = NamedSharding(mesh, frame_axis)
        placement: NamedSharding | None = NamedSharding(mesh, everywhere)
    else:
        where, placement = dev, None
    with jax.enable_x64(dtype == "float64"):
        values = jax.device_put(table.astype(dtype), where)
        kernel = functools.partial(_batch_kernel(program), values)
        stack = render_tiles(
            kernel, size, region=region, z=z, dtype=dtype, device=dev, progress=progress,
            placement=placement,
        )  # fmt: skip
    return stack[:frames]


@functools.lru_cache(maxsize=8)
def _batch_kernel(program: Program) -> Callable[..., jax.Array]:
    """``(constants[B, K], xs[t], ys[t], z) → uint8[B, t, t]``: the vmapped closure, jitted."""
    field, _ = to_parametric(program)

    @jax.jit
    def kernel(constants: jax.Array, xs: jax.Array, ys: jax.Array, z: jax.Array) -> jax.Array:
        frames = jax.vmap(lambda c: field(c, xs[None, :], ys[:, None], z))(constants)
        return jnp.where(frames < 0, jnp.uint8(255), jnp.uint8(0))

    return kernel
