"""Multi-process renders over ``jax.distributed``: each process renders its band of rows.

Input: a Program, what to draw and where to run (as :func:`prospero_jax.render`), in every
process of a job that called :func:`initialize` (or ``jax.distributed.initialize``).
Output: the whole ``(N, N)`` image, in every process.

How: process ``p`` of ``P`` renders rows ``[p * N / P, (p + 1) * N / P)`` (rounded to whole
rows) on its own local devices, sharding over them with ``devices="all"``; the bands are
then gathered with ``jax.experimental.multihost_utils.process_allgather`` (over the
collectives of JAX's CPU or accelerator runtime: gloo on CPU) and stacked. One process is
a job of one: the image is :func:`prospero_jax.render`'s.

Invariant: the image equals the single-process render bit for bit, since every pixel is
computed from the same coordinates by the same kernels, only in another process.
"""

from __future__ import annotations

from typing import Unpack

import jax
import numpy as np
from jax.experimental import multihost_utils
from jaxtyping import UInt8

from prospero_jax.ir.program import Program
from prospero_jax.renderers.render import render
from prospero_jax.renderers.view import Shorthand, View, resolve


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process job: ``jax.distributed.initialize`` with these arguments.

    With none given, JAX detects the cluster (SLURM, Open MPI, Kubernetes, TPU pods...).
    Call it first thing, before any other JAX work in the process.
    """
    jax.distributed.initialize(coordinator, num_processes, process_id)


def process_rows(size: int, process: int, processes: int) -> tuple[int, int]:
    """The rows ``(start, stop)`` that ``process`` of ``processes`` renders."""
    return size * process // processes, size * (process + 1) // processes


def render_across_processes(
    program: Program,
    size: int | View,
    *,
    mode: str = "auto",
    **options: Unpack[Shorthand],
) -> UInt8[np.ndarray, "size size"]:
    """The whole image, this process rendering its share of the rows (module docstring).

    Without a ``target``, each process shards over all its local devices.
    """
    if options.get("target") is None and options.get("devices") is None:
        options["devices"] = "all"
    view, where = resolve(size, options)
    if view.rows is not None:
        raise ValueError("render_across_processes renders the whole image: no rows")
    processes, me = jax.process_count(), jax.process_index()
    if processes == 1:
        return render(program, view, target=where, mode=mode)
    size = view.size
    if size < processes:
        raise ValueError(f"image size {size} is smaller than the {processes} processes")
    band = render(program, view.band(*process_rows(size, me, processes)), target=where, mode=mode)
    tallest = -(-size // processes)  # bands differ by at most one row: pad to gather
    padded = np.zeros((tallest, size), np.uint8)
    padded[: len(band)] = band
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return np.concatenate(
        [
            gathered[p, : b - a]
            for p in range(processes)
            for a, b in [process_rows(size, p, processes)]
        ]
    )
