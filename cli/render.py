"""``prospero render``: a program to an image file (:func:`prospero_jax.render_file`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import jax
import typer

import prospero_jax as pj
from cli.app import (  # the shared options, as every rendering command imports them
    CacheOption,
    DeviceOption,
    DType,
    DTypeOption,
    ExactOption,
    FileArg,
    Mode,
    ModeOption,
    RegionOption,
    ZOption,
    app,
    console,
    load,
    option,
    progress_bar,
    target,
    user_errors,
    view,
)

SCALING = "Scaling out"
DEVICES = (
    "Shard the work over several devices: all, or a count N (the first N). Same image as "
    "one device. On CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N devices."
)
BAND_ROWS = (
    "Stream the image to disk in bands of this many rows: memory stays bounded by one band, "
    "and an interrupted render resumes where it stopped when run again. [default: streamed "
    f"above {int(pj.MEMORY_LIMIT**0.5)} px, {pj.BAND_ROWS} rows per band]"
)
RESTART = "Streamed renders: discard the bands an interrupted run left, start again."
COORDINATOR = (
    "Multi-process render: HOST:PORT of process 0 (jax.distributed). Each process renders "
    "its band of rows (streamed: its share of the bands, into the same partial file, so on "
    "a shared file system); process 0 writes the image."
)
PROCESSES = "Multi-process render: how many processes."
PROCESS_ID = "Multi-process render: this process's index, 0 to N-1."


class Shade(StrEnum):
    normals = "normals"
    gradient = "gradient"


@app.command()
def render(
    file: FileArg = None,
    size: Annotated[int, option("Image side in pixels. [default: 1024]", "--size", "-s")] = 1024,
    output: Annotated[
        Path | None,
        option(
            "Image to write: .png, .pgm (binary P5, greyscale) or .ppm (binary P6, colour). "
            "[default: FILE's name as .png]",
            "--output",
            "-o",
        ),
    ] = None,
    # The options every rendering command shares (defined once, in cli.app): typer
    # declares parameters per command, so each command lists them.
    dtype: DTypeOption = DType.float32,
    mode: ModeOption = Mode.auto,
    device: DeviceOption = None,
    region: RegionOption = "-1,1,-1,1",
    z: ZOption = 0.0,
    exact: ExactOption = False,
    cache: CacheOption = True,
    antialias: Annotated[
        bool,
        option(
            "Smooth the outline: grey levels from the distance estimate f/|∇f|, computed "
            "from gradients only at the pixels next to the outline."
        ),
    ] = False,
    shade: Annotated[
        Shade | None,
        option(
            "Colour the outline band by the gradient: normals (∇f/|∇f| as RGB) or gradient "
            "(hue: direction, brightness: |∇f|). Colour output: .png or .ppm."
        ),
    ] = None,
    band: Annotated[
        int,
        option(
            "With --shade: pixels on each side of the outline where gradients are "
            "evaluated; 0 evaluates every pixel (slow for long programs). [default: 3]",
            min=0,
        ),
    ] = 3,
    devices: Annotated[str | None, option(DEVICES, panel=SCALING)] = None,
    band_rows: Annotated[int | None, option(BAND_ROWS, panel=SCALING, min=1)] = None,
    restart: Annotated[bool, option(RESTART, "--restart", panel=SCALING)] = False,
    coordinator: Annotated[str | None, option(COORDINATOR, panel=SCALING)] = None,
    num_processes: Annotated[int | None, option(PROCESSES, panel=SCALING, min=1)] = None,
    process_id: Annotated[int | None, option(PROCESS_ID, panel=SCALING, min=0)] = None,
) -> None:
    """Render FILE (or the built-in demo) as a black-and-white image.

    White (255) where the program's value is negative, black elsewhere; row 0 is the top.
    With `--antialias`, grey levels along the outline; with `--shade`, a colour image.

    Examples: `prospero render` draws the demo model to demo.png;
    `prospero render prospero.vm --size 1024 -o out.pgm` draws the challenge's image;
    `prospero render prospero.vm --shade normals -o normals.png` colours its outline;
    `prospero render prospero.vm --size 65536 -o poster.png` streams a 4.3-gigapixel
    image band by band (run it again after an interruption to resume).
    """
    with user_errors():
        what = view(size, region, z)
        if antialias and shade is not None:
            raise ValueError("--antialias and --shade are exclusive: pick one")
        if coordinator or num_processes or process_id is not None:
            pj.initialize(coordinator, num_processes, process_id)  # before any JAX work
        program = load(file)
        out = output or Path(f"{file.stem if file else 'demo'}.png")
        where = target(dtype, device, devices, exact)
        if cache:
            pj.enable_compilation_cache()
        shading = "antialias" if antialias else shade.value if shade else None
        done = _render_file(program, out, what, where, mode, shading, band, band_rows, restart)
    if not done.written:
        me = jax.process_index()
        if done.streamed:
            bands = f"{done.streamed.rendered} of {done.streamed.bands} bands"
            typer.echo(f"process {me} rendered {bands}; process 0 wrote {out}")
        else:
            typer.echo(f"process {me} rendered its rows; process 0 writes {out}")
        return
    resumed = done.streamed.resumed if done.streamed else 0
    note = (
        f", {resumed} of {done.streamed.bands} bands resumed" if done.streamed and resumed else ""
    )
    typer.echo(
        f"wrote {out} ({size}×{size}, {done.inside:.1%} inside{note}) in {done.seconds:.2f} s"
    )


def _render_file(
    program: pj.Program, out: Path, what: pj.View, where: pj.Target, mode: Mode,
    shading: str | None, band: int, band_rows: int | None, restart: bool,
) -> pj.FileReport:  # fmt: skip
    """:func:`prospero_jax.render_file` with a progress bar; a streamed render says what it
    resumed, and what it kept when it stops."""
    partial, _ = pj.partial_paths(out)
    streamed = pj.streams(what, band_rows)
    with progress_bar() as bar:
        unit = "bands" if streamed else "steps"
        task = bar.add_task(f"rendering {program.source} at {what.size}²", total=None, unit=unit)
        first = True

        def report(done: int, total: int) -> None:
            nonlocal first
            if first and streamed:  # bands found done: not part of this run's speed (ETA)
                bar.reset(task, completed=done, total=total)
                if done:
                    console.print(f"resuming: {done} of {total} bands already in {partial}")
            else:
                bar.update(task, completed=done, total=total)
            first = False

        try:
            return pj.render_file(
                program, out, what, where, mode=mode.value, shading=shading,
                band=band or None, band_rows=band_rows, resume=not restart, progress=report,
            )  # fmt: skip
        except pj.StreamError as err:
            hint = "run the same command to resume, or add --restart to start again"
            typer.echo(f"error: {err}: {hint} (or delete both files)", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            if not streamed or not partial.exists():
                raise
            typer.echo(f"interrupted: {out} was not written; the bands done are kept in "
                       f"{partial}: run the same command to resume", err=True)  # fmt: skip
            raise typer.Exit(130) from None
