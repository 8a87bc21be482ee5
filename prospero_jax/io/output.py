"""An image file from a program: the one call that decides how (the CLI's ``render``, and
``render3d``'s :func:`render_heightmap_file` for a solid seen from above).

Input: a Program, a target path (``.png``, ``.pgm``, or ``.ppm`` for colour), what to draw
and where to run, a mode, and optionally a shading (``antialias``, ``normals``,
``gradient``) or a band height for streaming.
Output: the file, written atomically (or streamed, resumably), and a :class:`FileReport`;
or, for a constant swept over values, one frame file per value (:func:`render_frames`).

Policy, owned here and not by the CLI: an image of more than
:data:`~prospero_jax.renderers.view.MEMORY_LIMIT` pixels, or any image when ``band_rows``
is given, is streamed to disk band by band (:func:`~prospero_jax.io.stream.render_to_file`);
smaller ones are rendered in memory and written whole. Shaded images need gradients of
the whole image at once, so they are never streamed (too large is an error). In a
multi-process job every process renders its share and process 0 writes the file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from jaxtyping import ArrayLike, Float

from prospero_jax.io.image import check_image_format, write_image
from prospero_jax.io.stream import StreamReport, render_to_file
from prospero_jax.ir.program import Program
from prospero_jax.renderers.batch import render_batch, sweep_constants
from prospero_jax.renderers.distributed import render_across_processes
from prospero_jax.renderers.heightmap import HEIGHTMAP_SHADES, render_heightmap, shade_heightmap
from prospero_jax.renderers.render import render
from prospero_jax.renderers.shade import GRADIENT_SHADES, sample_gradient, shade
from prospero_jax.renderers.view import MEMORY_LIMIT, Progress, Target, View
from prospero_jax.runtime.files import check_directory


@dataclass(frozen=True)
class FileReport:
    """What :func:`render_file` (or :func:`render_heightmap_file`) did: the file, the
    fraction of pixels inside (of a solid's columns, those that meet it), the seconds it
    took, whether this process wrote it (process 0 of a job does), and the streaming report
    for a streamed render (else None)."""

    path: Path
    inside: float
    seconds: float
    written: bool
    streamed: StreamReport | None = None


def streams(view: View, band_rows: int | None) -> bool:
    """Whether :func:`render_file` streams this view: asked to, or too large for memory."""
    return band_rows is not None or view.size * view.size > MEMORY_LIMIT


def render_file(
    program: Program,
    path: str | os.PathLike[str],
    view: View,
    target: Target,
    *,
    mode: str = "auto",
    shading: str | None = None,
    band: int | None = 3,
    band_rows: int | None = None,
    resume: bool = True,
    progress: Progress | None = None,
) -> FileReport:
    """Render ``program`` to the image file ``path`` (module docstring).

    ``shading`` draws the outline in grey levels (``antialias``) or colour (``normals``,
    ``gradient``) from gradients sampled within ``band`` pixels of it (``None``: every
    pixel; ``antialias`` always uses 1). Every argument is checked before any work.
    """
    out = Path(path)
    if shading is not None and shading not in GRADIENT_SHADES:
        shades = ", ".join(GRADIENT_SHADES)
        raise ValueError(f"shading must be one of {shades}, got {shading!r}")
    colour = shading not in (None, "antialias")
    check_image_format(out, colour=colour)
    check_directory(out)
    if view.rows is not None:
        raise ValueError("a file holds the whole image, not a band of rows")
    streamed = streams(view, band_rows)
    if streamed and shading is not None:
        side = int(MEMORY_LIMIT**0.5)
        raise ValueError(f"shaded images are not streamed: {side} px a side at most, no bands")
    start = time.perf_counter()
    me = jax.process_index()
    if streamed:
        report = render_to_file(
            program, out, view, band_rows=band_rows, resume=resume,
            target=target, mode=mode, progress=progress,
        )  # fmt: skip
        return FileReport(out, report.inside, time.perf_counter() - start, me == 0, report)
    if shading is not None:
        samples = sample_gradient(
            program, view, target=Target(target.dtype, target.device),
            band=1 if shading == "antialias" else band, progress=progress,
        )  # fmt: skip
        image = shade(samples, shading)
        inside = float(samples.inside.mean())
    elif jax.process_count() > 1:
        image = render_across_processes(program, view, target=target, mode=mode)
        inside = float(np.mean(image > 0))
    else:
        image = render(program, view, target=target, mode=mode, progress=progress)
        inside = float(np.mean(image > 0))
    if me == 0:
        write_image(out, image)
    return FileReport(out, inside, time.perf_counter() - start, me == 0)


def render_heightmap_file(
    program: Program,
    path: str | os.PathLike[str],
    view: View,
    target: Target,
    *,
    look: str = "lit",
    mode: str = "auto",
    progress: Progress | None = None,
) -> FileReport:
    """Render the solid ``program`` seen from above (:func:`~prospero_jax.render_heightmap`
    of ``view``) to the image file ``path``, drawn as ``look`` (one of
    :data:`~prospero_jax.renderers.heightmap.HEIGHTMAP_SHADES`: ``lit``, ``normals`` in
    colour, ``depth``; :func:`~prospero_jax.shade_heightmap`), atomically. The path, the
    look and the view are checked before any work."""
    out = Path(path)
    if look not in HEIGHTMAP_SHADES:
        raise ValueError(f"look must be one of {', '.join(HEIGHTMAP_SHADES)}, got {look!r}")
    check_image_format(out, colour=look == "normals")
    check_directory(out)
    start = time.perf_counter()
    heightmap = render_heightmap(
        program, view, target=target, mode=mode, normals=look != "depth", progress=progress
    )
    write_image(out, shade_heightmap(heightmap, look))
    solid = float(np.isfinite(heightmap.z).mean())
    return FileReport(out, solid, time.perf_counter() - start, True)


def render_frames(
    program: Program,
    constant: str,
    values: Float[ArrayLike, " frames"],
    directory: str | os.PathLike[str],
    view: View,
    target: Target,
    *,
    mode: str = "auto",
    image_format: str = "png",
    progress: Progress | None = None,
) -> list[Path]:
    """An animation: one frame per value of the ``const`` instruction ``constant``, written
    as ``directory/frame_0000.png``, ... (each atomically; ``directory`` is created).

    The frames are :func:`prospero_jax.render_batch`'s (``progress`` is its). Every
    argument is checked before any work.
    """
    out = Path(directory)
    if image_format not in ("png", "pgm"):
        raise ValueError(f"image format must be png or pgm, got {image_format!r}")
    check_directory(out)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the values of {constant} must be finite")
    table = sweep_constants(program, constant, values)
    images = render_batch(program, table, view, target=target, mode=mode, progress=progress)
    out.mkdir(exist_ok=True)
    paths = [out / f"frame_{index:04d}.{image_format}" for index in range(len(images))]
    for path, image in zip(paths, images, strict=True):
        write_image(path, image)
    return paths
