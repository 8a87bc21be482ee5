"""Kernel calls from the host: tapes and points packed into the kernels' fixed-capacity
arguments, dispatched on one device or sharded over several.

Input: many tapes (:class:`~prospero_jax.evaluators.tape.Tapes`, ``lengths`` rows each,
concatenated) and what each is evaluated on (boxes, leaf tiles' pixel axes and depths).
Output: the calls' arguments (:func:`call_spans` cuts consecutive tapes into calls,
:func:`call_args` pads a call's tapes and spans, :func:`leaf_args` a leaf call's pixels),
their results (:func:`dispatch`: every call sent before any is read back), and the leaf
kernel's tiles as they come (:func:`leaf_calls`).

Invariants: a call's shapes depend only on the capacities (:data:`LEAF_ROW_CAPACITY`,
and the kernels' own), the next power of two of a longer tape's rows and the dtype, so
the kernels compile once per shape, never per program or tile; arguments are allocated
aligned (:mod:`~prospero_jax.runtime.memory`) so that XLA:CPU takes them without a copy;
padding past a call's count is never read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from prospero_jax.evaluators.kernel_rows import COMPILER_OPTIONS
from prospero_jax.evaluators.leaf_kernels import LEAF_PIXEL_CAPACITY, NOT_FOUND, leaf_kernel
from prospero_jax.evaluators.tape import Tapes, register_capacity
from prospero_jax.renderers.sharding import line_mesh, pad_to
from prospero_jax.runtime import executables as _executables
from prospero_jax.runtime.memory import aligned_zeros

#: Rows of all tapes in one leaf call.
LEAF_ROW_CAPACITY = 1 << 16


def call_spans(lengths: np.ndarray, max_rows: int, max_groups: int) -> list[tuple[int, int]]:
    """Split consecutive tapes into calls of at most ``max_rows`` rows (or one tape, if
    longer) and ``max_groups`` tapes."""
    ends = np.cumsum(lengths)
    out, g = [], 0
    while g < len(lengths):
        base = ends[g - 1] if g else 0
        stop = int(np.searchsorted(ends, base + max_rows, side="right"))
        stop = min(max(stop, g + 1), g + max_groups, len(lengths))
        out.append((g, stop))
        g = stop
    return out


def call_args(
    tapes: Tapes,
    starts: np.ndarray,
    lengths: np.ndarray,
    g0: int,
    g1: int,
    max_rows: int,
    capacity: int,
) -> tuple[Tapes, np.ndarray, np.ndarray, int]:
    """One call's inputs: its tapes padded to ``max_rows`` (or the next power of two), their
    spans padded to ``capacity``, and its row count."""
    first, stop = int(starts[g0]), int(starts[g1 - 1] + lengths[g1 - 1])
    n_rows = max(max_rows, 1 << (stop - first - 1).bit_length())
    local = aligned_zeros(capacity, np.int32)
    local[: g1 - g0] = starts[g0:g1] - first
    count = aligned_zeros(capacity, np.int32)
    count[: g1 - g0] = lengths[g0:g1]
    return tapes.take(slice(first, stop)).padded(n_rows), local, count, stop - first


def joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def leaf_calls(
    tapes: Tapes,
    lengths: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    device: jax.Device,
    side: int,
    devices: Sequence[jax.Device] = (),
    values: bool = False,
    depth: int = 1,
    firsts: bool = False,
    limits: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Inside-masks of the ambiguous ``side × side`` tiles at depths ``zs`` (one per tile,
    or with ``depth`` a row of that many per tile), or with ``values`` the values
    themselves, or with ``firsts`` (and ``depth``) each column's first depth inside
    (``depth`` if none; searched as far as ``limits``; plus ``offsets``, or
    :data:`~prospero_jax.evaluators.leaf_kernels.NOT_FOUND` if none: as :func:`leaf_firsts`
    takes them):
    every kernel call dispatched now, then read back one by one as the iterator is
    advanced, ``(first tile, (tiles, depth × side²))`` a call (``(tiles, side²)`` with
    ``firsts``)."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    calls, spans = [], []
    capacity = LEAF_PIXEL_CAPACITY // (side * side * depth)
    per_call = items_per_call(len(lengths), capacity, devices)
    for t0, t1 in call_spans(lengths, LEAF_ROW_CAPACITY, per_call):
        args = leaf_args(tapes, starts, lengths, rows, cols, xs, ys, zs, t0, t1, capacity, side)
        if firsts:  # the depths each column needs searched (the padding: none)
            limit = aligned_zeros((capacity, side * side), np.int32)
            limit[: t1 - t0] = depth if limits is None else limits[t0:t1].reshape(-1, side * side)
            offset = aligned_zeros(capacity, np.int32)
            if offsets is not None:
                offset[: t1 - t0] = offsets[t0:t1]
            none = np.int32(depth if offsets is None else NOT_FOUND)
            args = (*args, limit, offset, none)
        registers = register_capacity(int(lengths[t0:t1].max()))
        calls.append((args, registers))
        spans.append((t0, t1))
    static: dict[str, Any] = {"side": side, "values": True} if values else {"side": side}
    if depth > 1:
        static["depth"] = depth
    if firsts:
        static["firsts"] = True
    outs = dispatch(leaf_kernel, calls, device, devices, **static)
    pixels = side * side * (1 if firsts else depth)

    def read() -> Iterator[tuple[int, np.ndarray]]:
        for (t0, t1), out in zip(spans, outs, strict=True):
            yield t0, np.asarray(out)[: (t1 - t0) * pixels].reshape(-1, pixels)

    return read()


def leaf_args(
    tapes: Tapes,
    starts: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    t0: int,
    t1: int,
    capacity: int,
    side: int,
) -> tuple[Any, ...]:
    """A leaf kernel call's first inputs for tiles ``t0:t1`` (of tapes starting at
    ``starts``, corners ``rows``, ``cols``, depths ``zs``, a row a tile): their tapes,
    spans and count, and each tile's pixel axes and depths, padded to ``capacity`` tiles
    (aligned: :mod:`~prospero_jax.runtime.memory`)."""
    pixel = np.arange(side)
    padded, spans, n_rows, _ = call_args(
        tapes, starts, lengths, t0, t1, LEAF_ROW_CAPACITY, capacity
    )
    tx = aligned_zeros((capacity, side), xs.dtype)
    ty = aligned_zeros((capacity, side), ys.dtype)
    tz = aligned_zeros((capacity, *zs.shape[1:]), zs.dtype)
    tx[: t1 - t0] = xs[cols[t0:t1, None] + pixel]
    ty[: t1 - t0] = ys[rows[t0:t1, None] + pixel]
    tz[: t1 - t0] = zs[t0:t1]
    return padded, spans, n_rows, np.int32(t1 - t0), tx, ty, tz


def _on(device: jax.Device, args: tuple[Any, ...], place: bool) -> tuple[Any, ...]:
    """``args`` put on ``device`` if ``place``, else as they are (host arrays)."""
    return tuple(jax.device_put(args, device)) if place else args


def items_per_call(items: int, capacity: int, devices: Sequence[jax.Device]) -> int:
    """Items per kernel call: all that fit, or a share per device so every device works."""
    return min(capacity, max(1, -(-items // len(devices)))) if len(devices) > 1 else capacity


def dispatch(
    kernel: Any,
    calls: list[tuple[tuple[Any, ...], int]],
    device: jax.Device,
    devices: Sequence[jax.Device],
    **static: Any,
) -> list[Any]:
    """``kernel(*args, registers=r, **static)`` for each ``(args, r)`` of ``calls``.

    On one device each call is dispatched asynchronously (through the stored executables),
    or on a CPU with several cores (:func:`~prospero_jax.runtime.executables.at_once`),
    several calls run at once, a thread each, and are returned computed. On several
    devices, calls go in batches of one per device: their inputs padded to the batch's
    largest tape, stacked, sharded over a 1-D mesh and run by ``shard_map``.
    """
    if len(devices) < 2:
        # On the default device, host arrays go straight to the kernel: JAX's C++ call
        # path transfers them, which costs less than jax.device_put's Python path (6 % of a
        # 1024² frame; experiments/RESULTS.md). Elsewhere they are placed first.
        place = device != jax.local_devices()[0]

        def run(call: tuple[tuple[Any, ...], int]) -> Any:
            args, r = call
            on = _on(device, args, place)
            return _executables.call(kernel, on, device, registers=r, **static)

        threads = min(len(calls), _executables.at_once(device))
        if threads < 2:
            return [run(call) for call in calls]

        # XLA:CPU runs one call's loop on one core, and queues a device's calls in order:
        # run in threads, they share the cores (bear 1024³ with normals on two cores, its
        # prune and dual calls: see experiments/RESULTS.md, "Twenty-eighth session").
        def computed(call: tuple[tuple[Any, ...], int]) -> Any:
            return jax.block_until_ready(run(call))  # type: ignore[no-untyped-call]

        return _executables.run_at_once(computed, calls, threads)
    share = len(devices)
    dispatched = []  # every batch is sent before any is read back, so devices overlap
    for first in range(0, len(calls), share):
        batch = calls[first : first + share]
        real = len(batch)
        batch = pad_to(batch, share)  # idle devices repeat the last call
        longest = max(len(args[0]) for args, _ in batch)
        stacked = jax.tree.map(
            lambda *leaves: np.stack(leaves),
            *[(args[0].padded(longest), *args[1:]) for args, _ in batch],
        )
        run, sharding = _sharded(kernel, tuple(devices), max(r for _, r in batch), **static)
        out = run(*jax.device_put(stacked, sharding))
        dispatched.append((real, out))
    outs: list[Any] = []
    for real, out in dispatched:
        host = jax.tree.map(np.asarray, out)
        outs.extend(jax.tree.map(lambda a, i=i: a[i], host) for i in range(real))
    return outs


@functools.lru_cache(maxsize=16)
def _sharded(
    kernel: Any, devices: tuple[jax.Device, ...], registers: int, **static: Any
) -> tuple[Callable[..., Any], NamedSharding]:
    """``kernel`` on a stack of calls, one per device of a 1-D mesh, and the stack's sharding."""
    sharding, _ = line_mesh(devices, "calls")
    mesh, spec = sharding.mesh, sharding.spec

    body = kernel.__wrapped__  # the kernel's function: XLA options go on the outer jit only

    def one(*stacked: Any) -> Any:
        out = body(*jax.tree.map(lambda a: a[0], stacked), registers=registers, **static)
        return jax.tree.map(lambda a: a[None], out)

    mapped = jax.shard_map(one, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
    return jax.jit(mapped, compiler_options=COMPILER_OPTIONS), sharding
