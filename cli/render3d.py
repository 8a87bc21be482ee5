"""``prospero render3d``: a solid (a program of x, y and z) as a shaded heightmap image
(:func:`prospero_jax.render_heightmap`, then :func:`prospero_jax.shade_heightmap`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

import prospero_jax as pj
from cli.app import (
    CacheOption,
    DeviceOption,
    DType,
    DTypeOption,
    ExactOption,
    FileArg,
    Mode,
    ModeOption,
    RegionOption,
    app,
    load,
    option,
    progress_task,
    target,
    user_errors,
    view,
)


class Look(StrEnum):
    lit = "lit"
    normals = "normals"
    depth = "depth"


@app.command()
def render3d(
    file: FileArg = None,
    size: Annotated[int, option("Image side in pixels. [default: 512]", "--size", "-s")] = 512,
    depth: Annotated[
        int | None, option("Depth samples, z from 1 down to -1. [default: the size]", min=2)
    ] = None,
    shade: Annotated[
        Look,
        option(
            "lit: greyscale under a fixed light; normals: ∇f/|∇f| as RGB; depth: the "
            "surface's z as grey. [default: lit]"
        ),
    ] = Look.lit,
    turn: Annotated[float, option("Turn the model about the vertical axis, degrees.")] = 0.0,
    tilt: Annotated[float, option("Then tilt it about the horizontal axis, degrees.")] = 0.0,
    output: Annotated[
        Path | None,
        option(
            "Image to write: .png, .pgm (lit, depth) or .ppm. [default: FILE-3d.png]",
            "--output",
            "-o",
        ),
    ] = None,
    dtype: DTypeOption = DType.float32,
    mode: ModeOption = Mode.auto,
    device: DeviceOption = None,
    region: RegionOption = "-1,1,-1,1",
    exact: ExactOption = False,
    cache: CacheOption = True,
) -> None:
    """Render FILE (a solid: `prospero info` says "dimensions 3") seen from above.

    Each pixel shows the first surface from the top (z from 1 down to -1, the x, y of a 2-D
    render), culled on an octree: boxes proved inside or outside, or behind a surface
    already found, are not evaluated.

    Examples: `prospero render3d bear.vm -o bear.png`;
    `prospero render3d colonnade.vm --turn 30 --tilt -50 --shade normals -o c.png`.
    """
    with user_errors():
        what = view(size, region, depth=depth, turn=turn, tilt=tilt)
        program = load(file)
        out = output or Path(f"{file.stem if file else 'demo'}-3d.png")
        where = target(dtype, device, exact=exact)
        if cache:
            pj.enable_compilation_cache()
        with progress_task(f"heightmap of {program.source}", "layers") as progress:
            done = pj.render_heightmap_file(
                program, out, what, where, look=shade.value, mode=mode.value, progress=progress
            )
    typer.echo(f"wrote {out} ({size}×{size}, {what.samples} deep, {done.inside:.1%} solid) "
               f"in {done.seconds:.2f} s")  # fmt: skip
