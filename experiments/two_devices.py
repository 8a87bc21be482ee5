"""Both cores, tried: the root level on one device, then its children split in two halves,
each half's remaining levels and leaves in its own thread on its own (forced host) device.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python experiments/two_devices.py

Prints the median over 5 rounds of the best of 5 frames, prospero at 1024², float32, on one
device and on two (the images are checked equal to ``pj.render``'s). An experiment, not
the renderer: it drives the culled renderer's private helpers.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

import prospero_jax as pj
from prospero_jax.renderers import hierarchy as H
from prospero_jax.renderers.tile_grid import paint_tiles

PROGRAM = Path(__file__).resolve().parents[2] / "shared" / "prospero.vm"
LEAF = 32

# A frontier: tapes, their lengths, their tiles' corners (rows, cols) and the tiles' side.
Frontier = tuple[Any, np.ndarray, np.ndarray, np.ndarray, int]


def descend(front: Frontier, k: int, xs: np.ndarray, ys: np.ndarray, z: Any,
            device: jax.Device, root: int, image: np.ndarray) -> Frontier:  # fmt: skip
    """One k × k prune level, as ``hierarchy.descend`` runs it."""
    tapes, lengths, rows, cols, tile = front
    child, lanes = tile // k, k * k
    lane_rows, lane_cols = np.divmod(np.arange(lanes), k)
    child_rows = rows[:, None] + child * lane_rows
    child_cols = cols[:, None] + child * lane_cols
    depth = np.full(child_cols.shape, z, np.float32)
    edges = [xs[child_cols], xs[child_cols + child - 1], ys[child_rows + child - 1], ys[child_rows]]
    boxes = np.stack([*edges, depth, depth], axis=1)
    level = H.prune_level(tapes, lengths, boxes, device, root, ())
    paint_tiles(image, child, child_rows[level.inside], child_cols[level.inside], 255)
    lane, row = np.nonzero(level.emit.reshape(-1, lanes).T)
    order = level.kept.T > 0
    return (
        H.next_tapes(tapes, row, level, row * lanes + lane),
        level.kept.T[order].astype(np.int64),
        child_rows.T[order],
        child_cols.T[order],
        child,
    )


def finish(front: Frontier, schedule: tuple[int, ...], xs: np.ndarray, ys: np.ndarray,
           device: jax.Device, root: int, image: np.ndarray) -> None:  # fmt: skip
    """The remaining levels and the leaves of ``front``, on ``device``."""
    z = 0.0
    for k in schedule:
        if len(front[1]):
            front = descend(front, k, xs, ys, z, device, root, image)
    if len(front[1]):
        leaves = H.Frontier(*front)
        inside = H.leaf_pixels(leaves, xs, ys, np.zeros(1), pj.Target(device=device))[:, 0]
        paint_tiles(image, LEAF, front[2], front[3], inside.view(np.uint8) * np.uint8(255))


def render(program: pj.Program, size: int, devices: list[jax.Device],
           pool: ThreadPoolExecutor) -> np.ndarray:  # fmt: skip
    xs, ys = (a.astype(np.float32) for a in pj.View(size).axes())
    image = np.zeros((size, size), np.uint8)
    tapes = H.root_tape(program, "float32")
    root = len(tapes)
    schedule = H.splits(size // LEAF)
    one = np.array([0], np.int64)
    front: Frontier = (tapes, np.array([root], np.int64), one, one, size)
    front = descend(front, schedule[0], xs, ys, 0.0, devices[0], root, image)
    if len(devices) == 1:
        finish(front, schedule[1:], xs, ys, devices[0], root, image)
        return image
    tapes, lengths, rows, cols, tile = front
    ends = np.cumsum(lengths)
    half = int(np.searchsorted(ends, ends[-1] / 2))  # two halves of about equal rows
    cut = int(ends[half - 1]) if half else 0
    halves = [
        (tapes.take(slice(0, cut)), lengths[:half], rows[:half], cols[:half], tile),
        (tapes.take(slice(cut, None)), lengths[half:], rows[half:], cols[half:], tile),
    ]
    jobs = [
        pool.submit(finish, part, schedule[1:], xs, ys, device, root, image)
        for part, device in zip(halves, devices, strict=True)
    ]
    for job in jobs:
        job.result()
    return image


def main() -> None:
    program = pj.load(PROGRAM)
    expected = pj.render(program, 1024)
    devices = jax.devices()
    assert len(devices) >= 2, "set XLA_FLAGS=--xla_force_host_platform_device_count=2"
    pool = ThreadPoolExecutor(2)
    for count in (1, 2):
        assert np.array_equal(render(program, 1024, devices[:count], pool), expected)
    best: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(5):
        for count in (1, 2):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                render(program, 1024, devices[:count], pool)
                times.append(time.perf_counter() - started)
            best[count].append(min(times))
    for count, times in best.items():
        print(f"{count} device(s): {statistics.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
