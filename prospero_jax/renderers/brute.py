"""Stage 4, render: Program → uint8 image, by brute force or by culling.

Input: a Program, an image size ``N``, a region, a dtype, a device and a mode.
Output: an ``(N, N)`` uint8 array, 255 where the program's value is < 0 (NaN is not),
row 0 at the region's top (``ymax``), column 0 at its left (``xmin``).

Modes give identical images: ``brute`` evaluates the unrolled closure at every pixel
(below); ``culled`` evaluates intervals over a tile hierarchy and prunes the tape per
tile (:mod:`prospero_jax.renderers.culled`). ``auto`` picks ``culled`` on CPU, where it is 35–45×
faster for prospero at 1024² (``experiments/RESULTS.md``), and ``brute`` on accelerators:
the interpreter's loops run one row at a time, which suits a CPU core, while a GPU runs
the fused closure over a million pixels at once (not measured: no GPU was available).

Brute force: the image is cut into ``tile × tile`` squares. One jitted kernel takes a tile's
column and row coordinates as data (two vectors, computed on the host exactly as the
oracle computes them) and returns that tile's pixels, so one compilation serves every
tile, every image size and every region; only the tile shape, dtype and device key the
cache. Edge tiles are padded by repeating the last coordinate and cropped. Up to
``IN_FLIGHT`` tiles are dispatched ahead, so the device computes while the host copies
finished tiles out, and memory stays bounded by the output image plus a few tiles.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import UInt8

from prospero_jax.benchmarks.strategies import tile_kernel
from prospero_jax.evaluators.reference import (
    DEFAULT_REGION,
    axes,
    check_region,
    check_size,
    check_z,
)
from prospero_jax.ir.program import Program
from prospero_jax.renderers.culled import render_culled

#: Tile side on CPU, and on accelerators (which want more work per call).
CPU_TILE = 256
ACCELERATOR_TILE = 2048
#: Tiles dispatched ahead of the one being copied back.
IN_FLIGHT = 2
DTYPES = ("float32", "float64")
MODES = ("auto", "brute", "culled")

Progress = Callable[[int, int], None]


def resolve_device(device: str | jax.Device | None = None) -> jax.Device:
    """A JAX device from ``None`` (the default backend), a platform name or a Device.

    Platform names are those of ``jax.devices(name)``: ``cpu``, ``gpu``, ``cuda``, ``tpu``.
    The device is this process's own (in a multi-process job, ``jax.devices()`` also
    lists the other processes' devices, which this one cannot use).
    """
    if device is None or isinstance(device, jax.Device):
        return device or jax.local_devices()[0]
    try:
        return jax.local_devices(backend=device)[0]
    except RuntimeError:
        have = sorted({d.platform for d in jax.local_devices()})
        raise ValueError(f"no {device!r} device available (have: {', '.join(have)})") from None


def tile_size(size: int, device: jax.Device) -> int:
    """The tile side for an image of ``size``: fixed per platform, smaller for tiny images.

    Images smaller than the fixed tile use the next power of two (at least 8), so small
    renders (tests, thumbnails) do not compute a whole tile of padding.
    """
    fixed = CPU_TILE if device.platform == "cpu" else ACCELERATOR_TILE
    return min(fixed, max(8, 1 << (size - 1).bit_length()))


@functools.lru_cache(maxsize=32)
def jitted_kernel(program: Program) -> Callable[..., Any]:
    """The jitted ``unrolled`` tile function ``(xs[tile], ys[tile], z) → uint8[tile, tile]``.

    JAX compiles it once per tile shape, dtype and device; this cache keeps one kernel
    (and so its compilations) per program.
    """
    unrolled = tile_kernel(program, "unrolled").function

    @jax.jit
    def kernel(xs: jax.Array, ys: jax.Array, z: jax.Array) -> jax.Array:
        return unrolled(xs, ys, z)

    return kernel


def resolve_devices(
    devices: str | Sequence[jax.Device] | None, device: jax.Device
) -> tuple[jax.Device, ...]:
    """The devices to shard over: ``None`` (just ``device``), ``"all"`` (this process's
    devices of ``device``'s platform) or an explicit sequence."""
    if devices is None:
        return (device,)
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be 'all' or a list of devices, got {devices!r}")
        return tuple(jax.local_devices(backend=device.platform))
    if not devices:
        raise ValueError("devices must not be empty")
    return tuple(devices)


def render(
    program: Program,
    size: int = 1024,
    *,
    region: tuple[float, float, float, float] = DEFAULT_REGION,
    z: float = 0.0,
    dtype: str = "float32",
    device: str | jax.Device | None = None,
    devices: str | Sequence[jax.Device] | None = None,
    mode: str = "auto",
    tile: int | None = None,
    rows: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> UInt8[np.ndarray, "rows size"]:
    """Render ``program`` as the challenge's ``size × size`` image (see the module docstring).

    ``dtype`` is the working precision (``float32`` or ``float64``); ``device`` a platform
    name or Device (default: JAX's default device); ``devices="all"`` (or a list) shards
    the work over several devices, with the same image; ``mode`` one of ``auto``,
    ``brute``, ``culled``; ``tile`` overrides the brute-force tile side; ``rows = (start,
    stop)`` renders only those rows of the image, ``(stop - start, size)``, the same pixels
    as the whole image has there; ``progress(done, total)`` is called as work finishes
    (tiles in brute force, levels or squares when culling).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    check_size(size)
    region, z = check_region(region), check_z(z)
    if rows is not None and not 0 <= rows[0] < rows[1] <= size:
        raise ValueError(f"rows must be (start, stop) with 0 <= start < stop <= {size}")
    dev = resolve_device(device)
    spread = resolve_devices(devices, dev)
    dev = spread[0]
    spread = spread if len(spread) > 1 else ()
    with jax.enable_x64(dtype == "float64"):
        if mode == "culled" or (mode == "auto" and dev.platform == "cpu"):
            return render_culled(
                program, size, region=region, z=z, dtype=dtype, device=dev,
                devices=spread, rows=rows, progress=progress,
            )  # fmt: skip
        return render_tiles(
            jitted_kernel(program), size, region=region, z=z, dtype=dtype, device=dev,
            devices=spread, rows=rows, tile=tile, progress=progress,
        )  # fmt: skip


def render_tiles(
    kernel: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    size: int,
    *,
    region: tuple[float, float, float, float] = DEFAULT_REGION,
    z: float = 0.0,
    dtype: str = "float32",
    device: jax.Device,
    tile: int | None = None,
    progress: Progress | None = None,
    rows: tuple[int, int] | None = None,
    devices: Sequence[jax.Device] = (),
    placement: jax.sharding.Sharding | None = None,
) -> UInt8[np.ndarray, "rows size"]:
    """The brute-force tile loop: ``kernel(xs, ys, z)`` on every tile, assembled on the host.

    ``kernel`` is a tile function (:mod:`prospero_jax.benchmarks.strategies`), jitted or compiled
    ahead of time for ``device`` and tiles of side ``tile`` (default: :func:`tile_size`);
    the caller sets ``jax_enable_x64`` for float64. A kernel may return tiles with leading
    axes (``(..., tile, tile)``, a batch of images): the result has them too, in front.
    ``rows = (start, stop)`` renders only
    those rows of the image (a band). With two or more ``devices`` (a jitted ``kernel``),
    tiles go in batches of one per device, a batch sharded over a 1-D ``Mesh`` of them.
    ``placement`` puts each tile's coordinates somewhere other than ``device`` (e.g.
    replicated over a mesh, for a kernel whose other inputs are sharded over it).
    """
    side = tile or tile_size(size, device)
    xs, ys = axes(size, region)
    if rows is not None:
        ys = ys[rows[0] : rows[1]]
    height, width = len(ys), len(xs)
    tiles_down, tiles_across = -(-height // side), -(-width // side)
    xs = np.pad(xs, (0, tiles_across * side - width), mode="edge").astype(dtype)
    ys = np.pad(ys, (0, tiles_down * side - height), mode="edge").astype(dtype)
    image: np.ndarray | None = None  # allocated from the first tile's leading axes
    jobs = [(r, c) for r in range(tiles_down) for c in range(tiles_across)]
    if len(devices) > 1:
        run = _sharded_tiles(kernel, tuple(devices), xs, ys, side, np.asarray(z, dtype))
        batch = len(devices)
    else:
        where = placement or device
        zz = jax.device_put(np.asarray(z, dtype), where)
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
            image = np.empty((*blocks.shape[1:-2], height, width), dtype=np.uint8)
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
    mesh = Mesh(np.array(devices), ("tiles",))
    split, replicated = NamedSharding(mesh, P("tiles")), NamedSharding(mesh, P())  # type: ignore[no-untyped-call]
    batched = _batched(kernel)
    zz = jax.device_put(z, replicated)

    def run(group: list[tuple[int, int]]) -> jax.Array:
        group = group + group[-1:] * (len(devices) - len(group))  # a short last batch
        cols = np.stack([xs[c * side : (c + 1) * side] for _, c in group])
        rows = np.stack([ys[r * side : (r + 1) * side] for r, _ in group])
        return batched(jax.device_put(cols, split), jax.device_put(rows, split), zz)

    return run


@functools.lru_cache(maxsize=32)
def _batched(kernel: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """``kernel`` over a batch of tiles; jit partitions it as its inputs are sharded."""
    return jax.jit(jax.vmap(kernel, in_axes=(0, 0, None)))
