"""The ``prospero`` typer app and what its commands share: errors, options, progress.

Every command reports bad input (a malformed `.vm` file, a missing file, a bad option
value, an unsupported output format, an unknown device) as one ``error: ...`` line on
stderr and exit status 2, never a traceback; usage errors typer finds itself (an unknown
option, a value of the wrong type) look the same (:class:`Commands`). Commands are thin:
they parse options into the library's value types and make one library call. The app
has glibc keep large freed arrays for reuse (:func:`prospero_jax.reuse_freed_memory`) and
freezes the imports' objects for Python's collector (``gc.freeze()``), process-wide: a
process is one command.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

import prospero_jax as pj


class Commands(TyperGroup):
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
    cls=Commands,
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
    pj.reuse_freed_memory()  # one process, one job: large arrays reused, not faulted in again
    # The ~100k objects of the imports (JAX's most) are kept to the end: Python's collector
    # skips them instead of walking them all at each full collection (20-50 ms each).
    gc.freeze()


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's input errors into one line on stderr and exit status 2."""
    try:
        yield
    except (pj.VMError, ValueError, OSError) as err:
        message = str(err)
        if isinstance(err, pj.InvalidView):  # the library's parameter is the option's name
            message = f"--{err.field.replace('_', '-')}: {err}"
        elif isinstance(err, OSError) and not isinstance(err, pj.FileWriteError):
            # "[Errno 28] No space left on device: 'x'" names the file last, if at all.
            reason = err.strerror or str(err)
            message = f"{err.filename}: {reason}" if err.filename else reason
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was written", err=True)
        raise typer.Exit(130) from None


def load(file: Path | None) -> pj.Program:
    """FILE, or the built-in demo model when it is left out."""
    return pj.shapes.demo_program() if file is None else pj.load(file)


def checked(option: str, check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)``, its ValueError's message prefixed with the option's name."""
    try:
        return check(value)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def view(
    size: int,
    region: str = "-1,1,-1,1",
    z: float = 0.0,
    size_option: str = "--size",
    *,
    depth: int | None = None,
    turn: float = 0.0,
    tilt: float = 0.0,
) -> pj.View:
    """A :class:`prospero_jax.View` from the options (a solid's: ``depth``, ``turn`` and
    ``tilt`` too), an error naming the option at fault."""
    try:
        xmin, xmax, ymin, ymax = (float(v) for v in region.split(","))
    except ValueError:
        raise ValueError(f"--region must be XMIN,XMAX,YMIN,YMAX, got {region!r}") from None
    turned = pj.rotation(turn, tilt) if turn or tilt else None
    try:
        return pj.View(size, (xmin, xmax, ymin, ymax), z, depth=depth, rotation=turned)
    except pj.InvalidView as err:
        option = size_option if err.field == "size" else f"--{err.field}"
        raise ValueError(f"{option}: {err}") from None


def target(
    dtype: DType, device: str | None, devices: str | None = None, exact: bool = False
) -> pj.Target:
    """A :class:`prospero_jax.Target`: ``--devices`` is all, or a count N (the first N)."""
    one = pj.Target.resolve(dtype.value, device, exact=exact)  # a bad --device fails here
    if devices is None or devices == "all":
        return pj.Target.resolve(dtype.value, one.device, devices, exact)
    try:
        count = int(devices)
    except ValueError:
        raise ValueError(f"--devices must be 'all' or a count, got {devices!r}") from None
    try:
        return pj.Target.resolve(dtype.value, one.device, count, exact)
    except ValueError as err:  # too many: "devices N: M cpu device(s) here"
        raise ValueError(f"--{err}") from None


def progress_bar() -> Progress:
    """A transient progress bar on stderr, shown only on a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a pipe or a log gets no bar (and no blank line)
    )


@contextlib.contextmanager
def progress_task(description: str, unit: str) -> Iterator[pj.Progress]:
    """A :func:`progress_bar` with one task: yields the ``progress(done, total)`` callback
    the library's long calls take."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=None, unit=unit)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def option(help: str, *names: str, panel: str | None = None, **extra: Any) -> Any:
    """A typer option with ``help``, in help panel ``panel``; no default shown (the help
    says it where it matters)."""
    return typer.Option(*names, help=help, show_default=False, rich_help_panel=panel, **extra)


#: Options shared by the commands that render (typer declares parameters per command, so
#: every rendering command lists these lines; their meaning is defined once, here).
FileArg = Annotated[
    Path | None,
    typer.Argument(
        help="A .vm program. Leave out to use the built-in demo model.", show_default=False
    ),
]
DTypeOption = Annotated[DType, typer.Option(help="Working precision.")]
DeviceOption = Annotated[
    str | None, typer.Option(help="cpu, gpu, cuda or tpu. [default: JAX's default device]")
]
RegionOption = Annotated[str, typer.Option(help="The square drawn, as XMIN,XMAX,YMIN,YMAX.")]
ZOption = Annotated[float, typer.Option(help="The z plane sliced, for 3D models.")]
ModeOption = Annotated[
    Mode,
    typer.Option(
        help="brute: every pixel (or frame) through the compiled program; culled: interval "
        "culling and per-tile tape pruning (same image, no compile per program); auto: "
        "culled on CPU, brute on accelerators."
    ),
]
ExactOption = Annotated[
    bool,
    typer.Option(
        "--exact",
        help="Draw the program op by op, as written, in the working precision (culled and "
        "brute force then agree bit for bit). By default culling draws its sign program: "
        "affine and quadric parts and polygons folded, signs pushed through min/max/neg; "
        "the same "
        "image wherever |value| ≥ 1e-5, and faster.",
    ),
]
CacheOption = Annotated[
    bool, typer.Option(help="Keep compiled kernels in JAX's persistent cache on disk.")
]
