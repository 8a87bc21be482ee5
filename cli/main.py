"""The ``prospero`` command line: thin typer commands over the :mod:`prospero_jax` library.

Every command reports bad input (a malformed `.vm` file, a missing file, an unsupported
output format, an unknown device) as one ``error: ...`` line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import jax
import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

import prospero_jax as pj
from prospero_jax.io.image import check_image_format
from prospero_jax.runtime.files import atomic_write


class _Commands(TyperGroup):
    """Typer's command group, with usage errors (a bad option value, an unknown option) as
    one line, ``error: ...`` and exit status 2, like the commands' own errors."""

    def main(  # type: ignore[override]  # the same parameters, fewer spelled out
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except UsageError as err:
            where = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
            typer.echo(f"error: {err.format_message()}{where}", err=True)
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_Commands,
    name="prospero",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console(stderr=True)


class DType(StrEnum):
    float32 = "float32"
    float64 = "float64"


class Mode(StrEnum):
    auto = "auto"
    brute = "brute"
    culled = "culled"


class Shade(StrEnum):
    normals = "normals"
    gradient = "gradient"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prospero-jax {pj.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Render, inspect and benchmark implicit-surface programs (.vm) with JAX.

    A .vm program is a straight-line list of instructions, one per line: ID OPCODE ARGS.

    Its value at a point (x, y) is the last instruction's; where it is negative, the
    point is inside the shape and its pixel is drawn white.
    """


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's input errors into one line on stderr and exit status 2."""
    try:
        yield
    except (pj.VMError, ValueError, OSError) as err:
        message = str(err)
        if isinstance(err, OSError) and not isinstance(err, pj.FileWriteError):
            # "[Errno 28] No space left on device: 'x'" names the file last, if at all.
            message = f"{err.filename or 'error'}: {err.strerror or err}"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was written", err=True)
        raise typer.Exit(130) from None


def _load(file: Path | None) -> pj.Program:
    return pj.shapes.demo_program() if file is None else pj.load(file)


def _checked(option: str, check: Any, value: Any) -> Any:
    """``check(value)``, its ValueError's message prefixed with the option's name."""
    try:
        return check(value)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return value


def _region(text: str) -> tuple[float, float, float, float]:
    try:
        xmin, xmax, ymin, ymax = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--region must be XMIN,XMAX,YMIN,YMAX, got {text!r}") from None
    return _checked("--region", pj.reference.check_region, (xmin, xmax, ymin, ymax))  # type: ignore[no-any-return]


#: Options shared by the commands that render.
DTypeOption = Annotated[DType, typer.Option(help="Working precision.")]
DeviceOption = Annotated[
    str | None, typer.Option(help="cpu, gpu, cuda or tpu. [default: JAX's default device]")
]
RegionOption = Annotated[str, typer.Option(help="The square drawn, as XMIN,XMAX,YMIN,YMAX.")]
ZOption = Annotated[float, typer.Option(help="The z plane sliced, for 3D models.")]
CacheOption = Annotated[
    bool, typer.Option(help="Keep compiled kernels in JAX's persistent cache on disk.")
]

#: Renders larger than this many pixels a side are streamed to disk band by band.
STREAM_ABOVE = 16384

FileArg = Annotated[
    Path | None,
    typer.Argument(
        help="A .vm program. Leave out to use the built-in demo model.",
        show_default=False,
    ),
]


@app.command()
def render(
    file: FileArg = None,
    size: Annotated[int, typer.Option("--size", "-s", min=1, help="Image side in pixels.")] = 1024,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Image to write: .png, .pgm (binary P5, greyscale) or .ppm (binary P6, "
            "colour). [default: FILE's name as .png]",
            show_default=False,
        ),
    ] = None,
    dtype: DTypeOption = DType.float32,
    mode: Annotated[
        Mode,
        typer.Option(
            help="brute: every pixel through the compiled program; culled: interval culling "
            "and per-tile tape pruning (same image, much faster); auto: the fastest."
        ),
    ] = Mode.auto,
    device: DeviceOption = None,
    region: RegionOption = "-1,1,-1,1",
    z: ZOption = 0.0,
    cache: CacheOption = True,
    antialias: Annotated[
        bool,
        typer.Option(
            help="Smooth the outline: grey levels from the distance estimate f/|∇f|, "
            "computed from gradients only at the pixels next to the outline."
        ),
    ] = False,
    shade: Annotated[
        Shade | None,
        typer.Option(
            help="Colour the outline band by the gradient: normals (∇f/|∇f| as RGB) or "
            "gradient (hue: direction, brightness: |∇f|). Colour output: .png or .ppm.",
            show_default=False,
        ),
    ] = None,
    band: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --shade: pixels on each side of the outline where gradients are "
            "evaluated; 0 evaluates every pixel (slow for long programs).",
        ),
    ] = 3,
    devices: Annotated[
        str | None,
        typer.Option(
            help="Shard the work over several devices: all, or a count N (the first N). "
            "Same image as one device. On CPU, XLA_FLAGS="
            "--xla_force_host_platform_device_count=N makes N devices.",
            show_default=False,
            rich_help_panel="Scaling out",
        ),
    ] = None,
    band_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Stream the image to disk in bands of this many rows: memory stays "
            "bounded by one band, and an interrupted render resumes where it stopped "
            f"when run again. [default: streamed above {STREAM_ABOVE} px, "
            f"{pj.BAND_ROWS} rows per band]",
            show_default=False,
            rich_help_panel="Scaling out",
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Streamed renders: discard the bands an interrupted run left, start again.",
            rich_help_panel="Scaling out",
        ),
    ] = False,
    coordinator: Annotated[
        str | None,
        typer.Option(
            help="Multi-process render: HOST:PORT of process 0 (jax.distributed). Each "
            "process renders its band of rows (streamed: its share of the bands, into the "
            "same partial file, so on a shared file system); process 0 writes the image.",
            show_default=False,
            rich_help_panel="Scaling out",
        ),
    ] = None,
    num_processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            rich_help_panel="Scaling out",
            help="Multi-process render: how many processes.",
        ),
    ] = None,
    process_id: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default=False,
            rich_help_panel="Scaling out",
            help="Multi-process render: this process's index, 0 to N-1.",
        ),
    ] = None,
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
    with _user_errors():
        _checked("--size", pj.reference.check_size, size)
        _checked("--z", pj.reference.check_z, z)
        bounds = _region(region)
        if coordinator or num_processes or process_id is not None:
            pj.initialize(coordinator, num_processes, process_id)  # before any JAX work
        program = _load(file)
        out = output or Path(f"{file.stem if file else 'demo'}.png")
        if antialias and shade is not None:
            raise ValueError("--antialias and --shade are exclusive: pick one")
        check_image_format(out, colour=shade is not None)  # fail before rendering
        if not out.parent.is_dir():
            raise ValueError(f"{out}: directory {out.parent} does not exist")
        streamed = band_rows is not None or size > STREAM_ABOVE
        if streamed and (antialias or shade is not None):
            raise ValueError("--antialias and --shade are not streamed: use --size "
                             f"{STREAM_ABOVE} or less, without --band-rows")  # fmt: skip
        target = pj.resolve_device(device)
        spread = _devices(devices, target)
        if cache:
            pj.enable_compilation_cache()
        options: dict[str, Any] = dict(
            region=bounds, z=z, dtype=dtype.value, device=target, devices=spread
        )
        start = time.perf_counter()
        if streamed:
            done = _stream(program, size, out, band_rows or pj.BAND_ROWS, restart,
                           mode=mode.value, **options)  # fmt: skip
            if jax.process_index() > 0:
                typer.echo(f"process {jax.process_index()} rendered {done.rendered} of "
                           f"{done.bands} bands; process 0 wrote {out}")  # fmt: skip
                return
            resumed = f", {done.resumed} of {done.bands} bands resumed" * bool(done.resumed)
            typer.echo(f"wrote {out} ({size}×{size}, {done.inside:.1%} inside{resumed}) "
                       f"in {time.perf_counter() - start:.2f} s")  # fmt: skip
            return
        with _progress() as bar:
            task = bar.add_task(f"{program.source} at {size}²", total=None, unit="steps")

            def report(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            if antialias or shade is not None:
                options.pop("devices")
                samples = pj.sample_gradient(
                    program,
                    size,
                    band=(band or None) if shade is not None else 1,
                    progress=report,
                    **options,
                )
                kind = "antialias" if shade is None else shade.value
                image = pj.shade(samples, kind)
                inside = float(samples.inside.mean())
            elif jax.process_count() > 1:
                options.pop("device")
                image = pj.render_across_processes(program, size, mode=mode.value, **options)
                inside = float((image > 0).mean())
            else:
                image = pj.render(program, size, mode=mode.value, progress=report, **options)
                inside = float((image > 0).mean())
        if jax.process_index() > 0:
            typer.echo(f"process {jax.process_index()} rendered its rows; process 0 writes {out}")
            return
        pj.write_image(out, image)
        seconds = time.perf_counter() - start
        typer.echo(f"wrote {out} ({size}×{size}, {inside:.1%} inside) in {seconds:.2f} s")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]rendering[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a pipe or a log gets no bar (and no blank line)
    )


def _devices(text: str | None, device: Any) -> str | list[Any] | None:
    """``--devices``: None, "all", or the first N devices of ``device``'s platform."""
    if text is None or text == "all":
        return text
    have: list[Any] = jax.local_devices(backend=device.platform)
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"--devices must be 'all' or a count, got {text!r}") from None
    if not 1 <= count <= len(have):
        raise ValueError(f"--devices {count}: {len(have)} {device.platform} device(s) here")
    return have[:count]


def _stream(
    program: pj.Program, size: int, out: Path, band_rows: int, restart: bool, **options: Any
) -> pj.StreamReport:
    """A streamed render with a band progress bar, and a resume hint if interrupted."""
    partial, _ = pj.partial_paths(out)
    with _progress() as bar:
        task = bar.add_task(f"{program.source} at {size}² in bands", total=None, unit="bands")
        first = True

        def report(done: int, total: int) -> None:
            nonlocal first
            if first:  # bands found done: not part of this run's speed (the ETA)
                bar.reset(task, completed=done, total=total)
                if done:
                    console.print(f"resuming: {done} of {total} bands already in {partial}")
                first = False
            else:
                bar.update(task, completed=done, total=total)

        try:
            return pj.render_to_file(
                program, size, out, band_rows=band_rows, resume=not restart, progress=report,
                **options,
            )  # fmt: skip
        except pj.StreamError as err:
            hint = "run the same command to resume, or add --restart to start again"
            typer.echo(f"error: {err}: {hint} (or delete both files)", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            kept = (
                f"; the bands done are kept in {partial}: run the same command to resume"
                if partial.exists()
                else ""
            )
            typer.echo(f"interrupted: {out} was not written{kept}", err=True)
            raise typer.Exit(130) from None


@app.command()
def sweep(
    file: FileArg = None,
    constant: Annotated[
        str | None,
        typer.Option(
            help="The const instruction to vary, by its id in the .vm file (e.g. _1a). "
            "Leave out to list them.",
            show_default=False,
        ),
    ] = None,
    start: Annotated[float, typer.Option("--from", help="The constant's first value.")] = 0.0,
    stop: Annotated[float, typer.Option("--to", help="The constant's last value.")] = 1.0,
    frames: Annotated[int, typer.Option(min=1, max=100_000, help="How many frames (values).")] = 24,
    size: Annotated[int, typer.Option("--size", "-s", min=1, help="Frame side in pixels.")] = 512,
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Directory for the frames (created).")
    ] = Path("frames"),
    image_format: Annotated[str, typer.Option("--format", help="png or pgm.")] = "png",
    dtype: DTypeOption = DType.float32,
    mode: Annotated[
        Mode,
        typer.Option(
            help="brute: one vmapped, jitted closure renders every frame's tiles at once; "
            "culled: each frame culled in turn (no compile per frame); auto: culled on CPU."
        ),
    ] = Mode.auto,
    device: DeviceOption = None,
    region: RegionOption = "-1,1,-1,1",
    z: ZOption = 0.0,
    cache: CacheOption = True,
    devices: Annotated[
        str | None,
        typer.Option(
            help="Shard over several devices: all, or a count N (brute: the frames; "
            "culled: each frame's work).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Render an animation: one frame per value of a constant, swept --from --to.

    Frames are written as OUT_DIR/frame_0000.png, frame_0001.png, ... (each atomically).

    Example: `prospero sweep model.vm --constant _1a --from 0.2 --to 0.9 --frames 48`;
    `prospero sweep model.vm` lists the constants you can sweep.
    """
    with _user_errors():
        _checked("--from", _finite, start)
        _checked("--to", _finite, stop)
        _checked("--size", pj.reference.check_size, size)
        _checked("--z", pj.reference.check_z, z)
        bounds = _region(region)
        program = _load(file)
        if constant is None:
            names = program.constant_ids
            shown = ", ".join(names[:20]) + (
                f", ... ({len(names)} in all)" if len(names) > 20 else ""
            )
            raise ValueError(
                f"name the constant to sweep with --constant: one of {shown or 'none'}"
            )
        if image_format not in ("png", "pgm"):
            raise ValueError(f"--format must be png or pgm, got {image_format!r}")
        if not out_dir.parent.is_dir():
            raise ValueError(f"{out_dir}: directory {out_dir.parent} does not exist")
        table = pj.sweep_constants(program, constant, np.linspace(start, stop, frames))
        target = pj.resolve_device(device)
        spread = _devices(devices, target)
        if cache:
            pj.enable_compilation_cache()
        began = time.perf_counter()
        with _progress() as bar:
            task = bar.add_task(f"{program.source}: {frames} frames", total=None, unit="steps")
            images = pj.render_batch(
                program, table, size, region=bounds, z=z, dtype=dtype.value,
                device=target, devices=spread, mode=mode.value,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
        out_dir.mkdir(exist_ok=True)
        for index, image in enumerate(images):
            pj.write_image(out_dir / f"frame_{index:04d}.{image_format}", image)
        typer.echo(
            f"wrote {frames} frames ({size}×{size}) to {out_dir}/frame_0000.{image_format} … "
            f"frame_{frames - 1:04d}.{image_format} in {time.perf_counter() - began:.2f} s"
        )


@app.command()
def info(
    file: FileArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
) -> None:
    """Describe a program: size, opcodes, constants, depth and liveness.

    "max live values" is the most values alive at once when evaluating in order and
    freeing each after its last use: it bounds the memory of an interpreter like the
    oracle.
    """
    with _user_errors():
        facts = pj.describe(_load(file))
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    out = Console()
    simple = facts["simplified"]
    consts = facts["constants"]
    table = Table(title=facts["source"], show_header=False, title_justify="left")
    table.add_row("instructions", f"{facts['instructions']:,}")
    table.add_row("inputs", ", ".join(facts["inputs"]) or "none")
    table.add_row("depth", f"{facts['depth']:,}")
    table.add_row("max live values", f"{facts['max_live']:,}")
    table.add_row(
        "constants",
        f"{consts['count']:,} ({consts['distinct']:,} distinct, "
        f"range {consts['min']:g} … {consts['max']:g})"
        if consts["count"]
        else "none",
    )
    table.add_row(
        "after simplify",
        f"{simple['instructions']:,} instructions ({simple['non_constant']:,} non-constant), "
        f"max live {simple['max_live']:,}",
    )
    table.add_row("digest", facts["digest"][:16])
    out.print(table)
    histogram = Table("opcode", "count", "share", title="opcodes", title_justify="left")
    for name, count in facts["histogram"].items():
        histogram.add_row(name, f"{count:,}", f"{count / facts['instructions']:.1%}")
    out.print(histogram)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes:
        raise ValueError(f"--sizes must name at least one image side, got {text!r}")
    for size in sizes:
        _checked("--sizes", pj.reference.check_size, size)
    return sizes


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


@app.command()
def bench(
    ctx: typer.Context,
    file: FileArg = None,
    sizes: Annotated[
        str, typer.Option(help="Image sides to measure, comma-separated.")
    ] = "256,1024",
    modes: Annotated[
        str,
        typer.Option(
            help="Comma-separated, among: unrolled (one XLA fusion), chunked (a jit per "
            "--chunk instructions), interpreter (tape as data: lax.scan), eager (op by op, "
            "no jit), culled (interval culling + tape pruning)."
        ),
    ] = ",".join(pj.DEFAULT_BENCH_MODES),
    device: Annotated[
        list[str] | None,
        typer.Option(help="cpu, gpu, ... (repeat for several). [default: JAX's default device]"),
    ] = None,
    dtype: DTypeOption = DType.float32,
    repeats: Annotated[
        int, typer.Option(min=2, help="Steady-state renders per row (after one warm-up).")
    ] = 5,
    budget: Annotated[
        float, typer.Option(help="Seconds of steady renders per row before stopping early.")
    ] = 10.0,
    oracle_max: Annotated[
        int,
        typer.Option(min=0, help="Largest size at which the float64 NumPy oracle is timed."),
    ] = 2048,
    chunk: Annotated[
        int, typer.Option(min=1, help="Instructions per jitted piece in chunked mode.")
    ] = pj.DEFAULT_CHUNK,
    warm: Annotated[
        bool, typer.Option(help="Also stage again from the warm persistent cache.")
    ] = True,
    export: Annotated[
        bool, typer.Option(help="Also jax.export the jitted kernels and reload them.")
    ] = True,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write every measurement as JSON to this file."),
    ] = None,
) -> None:
    """Time compilation against running, per mode, size and device.

    For each row: tracing, lowering and XLA compilation (cold, then from a warm
    persistent cache), the first render, steady renders (min/median/max), memory (XLA's
    memory analysis and peak RSS), HLO facts, and the speed-up over the float64 NumPy
    oracle timed in the same run, with the pixels that differ from its image.

    Example: `prospero bench prospero.vm --sizes 256,1024 --json out.json`.
    """
    with _user_errors():
        sides = _sizes(sizes)
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"--budget must be a positive number of seconds, got {budget}")
        program = _load(file)
        chosen = [m.strip() for m in modes.split(",") if m.strip()]
        if json_path is not None and not json_path.parent.is_dir():
            raise ValueError(f"{json_path}: directory {json_path.parent} does not exist")
        with console.status("measuring") as status:
            report = pj.bench(
                program,
                sides,
                modes=chosen,
                devices=list(device) if device else None,
                dtype=dtype.value,
                repeats=repeats,
                budget_s=budget,
                oracle_max=oracle_max,
                chunk=chunk,
                warm=warm,
                export=export,
                command=_command_line(ctx),
                log=lambda message: status.update(f"measuring {message}"),
            )
        if json_path is not None:
            text = json.dumps(report, indent=2).encode()

            def write(f: BinaryIO) -> None:
                f.write(text)

            atomic_write(json_path, write)
    _print_bench(report)
    if json_path is not None:
        typer.echo(f"wrote {json_path}")


def _command_line(ctx: typer.Context) -> str:
    """The running command with every option as parsed (defaults included), to rerun it."""
    words = [ctx.command_path]
    params = dict(ctx.params)
    if params.pop("file", None) is not None:
        words.append(shlex.quote(str(ctx.params["file"])))
    for name, value in params.items():
        if isinstance(value, bool):
            words.append(f"--{'' if value else 'no-'}{name.replace('_', '-')}")
        elif value is not None:
            flag = "--json" if name == "json_path" else f"--{name.replace('_', '-')}"
            for item in value if isinstance(value, list | tuple) else [value]:
                words += [flag, shlex.quote(str(item))]
    return " ".join(words)


def _print_bench(report: dict[str, Any]) -> None:
    out = Console(width=max(Console().width, 140))
    machine = report["machine"]
    out.print(
        f"{report['program']['source']} ({report['program']['instructions']:,} instructions); "
        f"jax {report['jax']}, jaxlib {report['jaxlib']}; {machine['processor']}, "
        f"{machine['cpus']} CPUs; {report['settings']['dtype']}"
    )
    times = Table(
        "mode", "size", "device", "trace", "lower", "compile", "first run",
        "steady median [min–max]", "× oracle", "pixels ≠ oracle",
        title="time (stages of the cold compile; steady: n renders)", title_justify="left",
    )  # fmt: skip
    for row in report["results"]:
        steady = row["steady"]
        ratio = row["oracle_ratio"]
        times.add_row(
            row["mode"],
            f"{row['size']}²",
            row["device"],
            _seconds(row["trace_s"]),
            _seconds(row["lower_s"]),
            _seconds(row["compile_s"]),
            _seconds(row["first_run_s"]),
            f"{_seconds(steady['median_s'])} [{_seconds(steady['min_s'])}–"
            f"{_seconds(steady['max_s'])}] n={steady['repeats']}",
            "-" if ratio is None else f"{ratio:.1f}×",
            "-" if row["pixels_differing"] is None else f"{row['pixels_differing']:,}",
        )
    out.print(times)
    oracle = ", ".join(
        f"{o['size']}²: {_seconds(o['median_s'])}"
        if "median_s" in o
        else f"{o['size']}²: skipped ({o['skipped']})"
        for o in report["oracle"]
    )
    out.print(f"float64 NumPy oracle (liveness GC), median: {oracle}")
    facts = Table(
        "mode", "size", "device", "compilations", "HLO instr.", "fusions", "largest fusion",
        "temp MB", "peak RSS MB", "warm compile", "export KB", "reload compile", "exe load",
        title="memory, HLO, warm persistent cache, jax.export (reloaded StableHLO is compiled "
        "again) and the serialized executable (loaded, not compiled)", title_justify="left",
    )  # fmt: skip
    for row in report["results"]:
        hlo, memory, warm, export = (row.get(k) for k in ("hlo", "memory", "warm_cache", "export"))
        facts.add_row(
            row["mode"],
            f"{row['size']}²",
            row["device"],
            str(row["compilations"]),
            f"{hlo['instructions']:,}" if hlo else "-",
            f"{hlo['fusions']:,}" if hlo else "-",
            f"{hlo['largest_fusion']:,}" if hlo else "-",
            f"{memory['temp_bytes'] / 2**20:.1f}" if memory else "-",
            "-" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}",
            _seconds(warm["compile_s"]) if warm else "-",
            f"{export['bytes'] / 1024:.0f}" if export else "-",
            _seconds(export["compile_s"]) if export else "-",
            _seconds(export["executable_load_s"]) if export else "-",
        )
    out.print(facts)
