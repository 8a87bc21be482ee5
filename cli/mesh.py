"""``prospero mesh``: a solid's surface as a triangle mesh file (:func:`prospero_jax.mesh`,
then :func:`prospero_jax.write_mesh`)."""

from __future__ import annotations

import time
import warnings
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
    FileArg,
    app,
    load,
    option,
    progress_task,
    target,
    user_errors,
)


class Method(StrEnum):
    dual = "dual"
    cubes = "cubes"


@app.command()
def mesh(
    file: FileArg = None,
    resolution: Annotated[
        int, option("Grid points per axis. [default: 128]", "--resolution", "-r", min=4)
    ] = 128,
    bounds: Annotated[
        str, option("The cube meshed, LOW,HIGH on every axis. [default: -1,1]")
    ] = "-1,1",
    output: Annotated[
        Path | None,
        option(
            "Mesh to write: .stl (binary), .ply (binary) or .obj. [default: FILE's name as .stl]",
            "--output",
            "-o",
        ),
    ] = None,
    method: Annotated[
        Method,
        option(
            "dual: dual contouring, a vertex per cell where the surface's planes meet "
            "(keeps edges and corners); cubes: marching cubes (vertices on grid edges: "
            "chamfers edges, a few % faster on smooth models). [default: dual]"
        ),
    ] = Method.dual,
    tolerance: Annotated[
        float,
        option(
            "dual: merge cells while one vertex stays within this many cells of the "
            "surface (flat parts become large triangles); 0 keeps a vertex in every "
            "crossed cell. [default: 1e-4]",
            min=0.0,
        ),
    ] = 1e-4,
    dtype: DTypeOption = DType.float32,
    device: DeviceOption = None,
    cache: CacheOption = True,
) -> None:
    """Mesh FILE's surface (a solid: value 0 between inside < 0 and outside > 0).

    Only the grid cells whose box may hold the surface are evaluated (interval culling on
    an octree); then dual contouring puts a vertex in each crossed cell where the
    surface's planes meet (sharp edges and corners kept), or marching cubes one on each
    crossed grid edge. The mesh is watertight and manifold: where the solid crosses the
    cube's faces it is capped flat there (with a warning: widen --bounds to mesh all of
    it).

    Examples: `prospero mesh bear.vm --bounds=-1.5,1.5 -o bear.stl`;
    `prospero mesh tanglecube.vm -r 256 --bounds=-3,3 -o tangle.ply`.
    """
    with user_errors():
        try:
            low, high = (float(v) for v in bounds.split(","))
        except ValueError:
            raise ValueError(f"--bounds must be LOW,HIGH, got {bounds!r}") from None
        program = load(file)
        out = output or Path(f"{file.stem if file else 'demo'}.stl")
        where = target(dtype, device)
        if cache:
            pj.enable_compilation_cache()
        started = time.perf_counter()
        with (
            progress_task(f"meshing {program.source}", "slabs") as progress,
            warnings.catch_warnings(record=True, action="always", category=pj.MeshWarning) as said,
        ):
            surface = pj.mesh_file(
                program, out, resolution, bounds=(low, high), method=method.value,
                tolerance=tolerance, target=where, progress=progress,
            )  # fmt: skip
        for warning in said:  # an empty or capped mesh: why, in a line
            if issubclass(warning.category, pj.MeshWarning):
                typer.echo(f"warning: {warning.message}", err=True)
    seconds = time.perf_counter() - started
    counts = f"{len(surface.vertices):,} vertices, {len(surface.faces):,} triangles"
    typer.echo(f"wrote {out} ({counts}, resolution {resolution}, {method.value}) "
               f"in {seconds:.2f} s")  # fmt: skip
