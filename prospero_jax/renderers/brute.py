"""Brute force: Program → uint8 image, the unrolled closure at every pixel, tile by tile.

Input: a tile function (:func:`unrolled_tile`, or any of the benchmarks' strategies), a
:class:`~prospero_jax.renderers.view.View` and a :class:`~prospero_jax.renderers.view.Target`.
Output: the view's ``(height, size)`` uint8 image, 255 where the program's value is < 0
(NaN is not), row 0 at the region's top (``ymax``), column 0 at its left (``xmin``).

The image is cut into ``tile × tile`` squares. One jitted kernel takes a tile's column
and row coordinates as data (two vectors, computed on the host exactly as the oracle
computes them) and returns that tile's pixels, so one compilation serves every tile,
every image size and every region; only the tile shape, dtype and device key the cache.
Edge tiles are padded by repeating the last coordinate and cropped. Up to ``IN_FLIGHT``
tiles are dispatched ahead, so the device computes while the host copies finished tiles
out, and memory stays bounded by the output image plus a few tiles. With several devices,
tiles go in batches of one per device, each batch one computation sharded over a 1-D mesh.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import UInt8

from prospero_jax.evaluators.lower import to_function
from prospero_jax.ir.program import Program
from prospero_jax.renderers.sharding import line_mesh, pad_to
from prospero_jax.renderers.view import Progress, Target, View, to_pixels

#: Tile side on CPU, and on accelerators (which want more work per call).
CPU_TILE = 256
ACCELERATOR_TILE = 2048
#: Tiles dispatched ahead of the one being copied back.
IN_FLIGHT = 2

TileFunction = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def unrolled_tile(program: Program, seal: bool = True) -> TileFunction:
    """``(xs[t], ys[t], z) → uint8[t, t]``: the unrolled closure (:func:`prospero_jax.to_function`,
    the program simplified first; ``seal``: each value sealed) at ``(xs[col], ys[row])``,
    255 where it is < 0."""
    field = to_function(program, seal=seal)

    def unrolled(xs: jax.Array, ys: jax.Array, z: jax.Array) -> jax.Array:
        return to_pixels(field(xs[None, :], ys[:, None], z), jnp)

    return unrolled


def tile_size(size: int, device: jax.Device) -> int:
    """The tile side for an image of ``size``: fixed per platform, smaller for tiny images.

    Images smaller than the fixed tile use the next power of two (at least 8), so small
    renders (tests, thumbnails) do not compute a whole tile of padding.
    """
    fixed = CPU_TILE if device.platform == "cpu" else ACCELERATOR_TILE
    return min(fixed, max(8, 1 << (size - 1).bit_length()))


#: Compiler options for an unsealed closure: XLA's algebraic simplifier off, so what the
#: seal forbade (reassociating, dividing by a reciprocal, folding chains of constants:
#: each changed hostile programs' images) cannot happen, without the barriers that keep
#: XLA:GPU from fusing. On CPU, where the sealed tape fuses anyway, kernels stay sealed.
NO_REWRITES = {"xla_disable_hlo_passes": "algsimp"}


def jitted(function: Callable[..., Any], seal: bool) -> Callable[..., Any]:
    """``jax.jit(function)``, with :data:`NO_REWRITES` where ``function`` is unsealed."""
    return jax.jit(function, compiler_options=None if seal else NO_REWRITES)


@functools.lru_cache(maxsize=32)
def jitted_kernel(program: Program, seal: bool = True) -> Callable[..., Any]:
    """The jitted ``unrolled`` tile function ``(xs[tile], ys[tile], z) → uint8[tile, tile]``
    (``seal``: as :attr:`~prospero_jax.renderers.view.Target.seals` says for the target).

    JAX compiles it once per tile shape, dtype and device; this cache keeps one kernel
    (and so its compilations) per program.
    """
    return jitted(unrolled_tile(program, seal), seal)


def render_tiles(
    kernel: TileFunction,
    view: View,
    target: Target,
    *,
    tile: int | None = None,
    progress: Progress | None = None,
    placement: jax.sharding.Sharding | None = None,
    z: np.ndarray | None = None,
) -> UInt8[np.ndarray, "height size"]:
    """The brute-force tile loop: ``kernel(xs, ys, z)`` on every tile, assembled on the host.

    ``kernel`` is a tile function, jitted or compiled ahead of time for the target's
    device and tiles of side ``tile`` (default: :func:`tile_size`); the caller enters
    :meth:`Target.precision`. A kernel may return tiles with leading axes (``(..., tile,
    tile)``, a batch of images): the result has them too, in front. With several target
    devices (a jitted ``kernel``), tiles go in batches of one per device, a batch sharded
    over a 1-D mesh. ``placement`` puts each tile's coordinates somewhere other than the
    device (e.g. replicated over a mesh, for a kernel whose other inputs are sharded).
    ``z`` is the kernel's third argument, the same for every tile (default: the view's
    z plane, a scalar); the image has the dtype of the kernel's tiles.
    """
    dtype = target.dtype
    side = tile or tile_size(view.size, target.device)
    xs, ys = view.axes()
    height, width = len(ys), len(xs)
    tiles_down, tiles_across = -(-height // side), -(-width // side)
    xs = np.pad(xs, (0, tiles_across * side - width), mode="edge").astype(dtype)
    ys = np.pad(ys, (0, tiles_down * side - height), mode="edge").astype(dtype)
    image: np.ndarray | None = None  # allocated from the first tile's leading axes
    jobs = [(r, c) for r in range(tiles_down) for c in range(tiles_across)]
    z = np.asarray(view.z if z is None else z, dtype)
    if len(target.devices) > 1:
        run = _sharded_tiles(kernel, target.devices, xs, ys, side, z)
        batch = len(target.devices)
    else:
        where = placement or target.device
        zz = jax.device_put(z, where)
        batch = 1

        def run(group: list[tuple[int, int]]) -> jax.Array:
            ((r, c),) = group
            col = jax.device_put(xs[c * side : (c + 1) * side], where)
            row = jax.device_put(ys[r * side : (r + 1) * side], where)
            return kernel(col, row, zz)[None]

    groups = [jobs[i : i + batch] for i in range(0, len(jobs), batch)]
    pending: collections.deque[tuple[list[tuple[int, int]], jax.Array]] = collections.deque()
    done = 0

    def finish() -> None:
        nonlocal done, image
        group, out = pending.popleft()
        blocks = np.asarray(out)
        if image is None:
            image = np.empty((*blocks.shape[1:-2], height, width), dtype=blocks.dtype)
        for (r, c), block in zip(group, blocks, strict=False):
            h, w = min(side, height - r * side), min(side, width - c * side)
            image[..., r * side : r * side + h, c * side : c * side + w] = block[..., :h, :w]
        done += len(group)
        if progress is not None:
            progress(done, len(jobs))

    for group in groups:
        pending.append((group, run(group)))
        if len(pending) > IN_FLIGHT:
            finish()
    while pending:
        finish()
    assert image is not None  # there is at least one tile
    return image


def _sharded_tiles(
    kernel: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    devices: tuple[jax.Device, ...],
    xs: np.ndarray,
    ys: np.ndarray,
    side: int,
    z: np.ndarray,
) -> Callable[[list[tuple[int, int]]], jax.Array]:
    """A batch runner: one tile per device, as one computation sharded over the devices."""
    split, replicated = line_mesh(devices, "tiles")
    batched = _batched(kernel)
    zz = jax.device_put(z, replicated)

    def run(group: list[tuple[int, int]]) -> jax.Array:
        group = pad_to(group, len(devices))  # a short last batch
        cols = np.stack([xs[c * side : (c + 1) * side] for _, c in group])
        rows = np.stack([ys[r * side : (r + 1) * side] for r, _ in group])
        return batched(jax.device_put(cols, split), jax.device_put(rows, split), zz)

    return run


@functools.lru_cache(maxsize=32)
def _batched(kernel: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """``kernel`` over a batch of tiles; jit partitions it as its inputs are sharded."""
    return jax.jit(jax.vmap(kernel, in_axes=(0, 0, None)))
