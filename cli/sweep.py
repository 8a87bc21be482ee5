"""``prospero sweep``: a constant swept over values, a frame each (`pj.render_frames`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

import prospero_jax as pj
from cli.app import (  # the shared options, as every rendering command imports them
    CacheOption,
    DeviceOption,
    DType,
    DTypeOption,
    FileArg,
    Mode,
    ModeOption,
    RegionOption,
    ZOption,
    app,
    checked,
    load,
    option,
    progress_task,
    target,
    user_errors,
    view,
)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


@app.command()
def sweep(
    file: FileArg = None,
    constant: Annotated[
        str | None,
        option(
            "The const instruction to vary, by its id in the .vm file (e.g. _1a). "
            "Leave out to list them."
        ),
    ] = None,
    start: Annotated[float, typer.Option("--from", help="The constant's first value.")] = 0.0,
    stop: Annotated[float, typer.Option("--to", help="The constant's last value.")] = 1.0,
    frames: Annotated[int, typer.Option(min=1, max=100_000, help="How many frames (values).")] = 24,
    size: Annotated[int, typer.Option("--size", "-s", help="Frame side in pixels.")] = 512,
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Directory for the frames (created).")
    ] = Path("frames"),
    image_format: Annotated[str, typer.Option("--format", help="png or pgm.")] = "png",
    # The options every rendering command shares (defined once, in cli.app): typer
    # declares parameters per command, so each command lists them.
    dtype: DTypeOption = DType.float32,
    mode: ModeOption = Mode.auto,
    device: DeviceOption = None,
    region: RegionOption = "-1,1,-1,1",
    z: ZOption = 0.0,
    cache: CacheOption = True,
    devices: Annotated[
        str | None,
        option(
            "Shard over several devices: all, or a count N (brute: the frames; culled: "
            "each frame's work)."
        ),
    ] = None,
) -> None:
    """Render an animation: one frame per value of a constant, swept --from --to.

    Frames are written as OUT_DIR/frame_0000.png, frame_0001.png, ... (each atomically).

    Example: `prospero sweep model.vm --constant _1a --from 0.2 --to 0.9 --frames 48`;
    `prospero sweep model.vm` lists the constants you can sweep.
    """
    with user_errors():
        values = np.linspace(
            checked("--from", _finite, start), checked("--to", _finite, stop), frames
        )
        what = view(size, region, z)
        if image_format not in ("png", "pgm"):
            raise ValueError(f"--format must be png or pgm, got {image_format!r}")
        program = load(file)
        if constant is None:
            names = program.constant_ids
            shown = ", ".join(names[:20]) + (
                f", ... ({len(names)} in all)" if len(names) > 20 else ""
            )
            raise ValueError(
                f"name the constant to sweep with --constant: one of {shown or 'none'}"
            )
        where = target(dtype, device, devices)
        if cache:
            pj.enable_compilation_cache()
        began = time.perf_counter()
        with progress_task(f"rendering {program.source}: {frames} frames", "steps") as progress:
            paths = pj.render_frames(
                program, constant, values, out_dir, what, where, mode=mode.value,
                image_format=image_format, progress=progress,
            )  # fmt: skip
    typer.echo(
        f"wrote {len(paths)} frames ({size}×{size}) to {paths[0]} … {paths[-1].name} "
        f"in {time.perf_counter() - began:.2f} s"
    )
