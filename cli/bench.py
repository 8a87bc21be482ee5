"""``prospero bench``: compile time against run time (:func:`prospero_jax.bench`)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import prospero_jax as pj
from cli.app import DType, DTypeOption, FileArg, app, console, load, user_errors, view
from prospero_jax.benchmarks import report as bench_report


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
            "no jit), culled (interval culling + tape pruning, XLA kernels), host (the same "
            "culling in NumPy: nothing to compile; sign programs of min, max and atoms)."
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
        int, typer.Option(min=0, help="Largest size at which the float64 NumPy oracle is timed.")
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
        Path | None, typer.Option("--json", help="Write every measurement as JSON to this file.")
    ] = None,
) -> None:
    """Time compilation against running, per mode, size and device.

    For each row: tracing, lowering and XLA compilation (cold, then from a warm
    persistent cache), the first render, steady renders (min/median/max), memory (XLA's
    memory analysis and peak RSS), HLO facts, and the speed-up over the float64 NumPy
    oracle timed in the same run, with the pixels that differ from its image.

    Example: `prospero bench prospero.vm --sizes 256,1024 --json out.json`.
    """
    with user_errors():
        try:
            sides = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--sizes must be comma-separated integers, got {sizes!r}") from None
        if not sides:
            raise ValueError(f"--sizes must name at least one image side, got {sizes!r}")
        for side in sides:
            view(side, size_option="--sizes")
        if not budget > 0 or budget == float("inf"):
            raise ValueError(f"--budget must be a positive number of seconds, got {budget}")
        if json_path is not None and not json_path.parent.is_dir():
            raise ValueError(f"{json_path}: directory {json_path.parent} does not exist")
        program = load(file)
        with console.status("measuring") as status:
            report = pj.bench(
                program, sides, modes=[m.strip() for m in modes.split(",") if m.strip()],
                devices=list(device) if device else None, dtype=dtype.value, repeats=repeats,
                budget_s=budget, oracle_max=oracle_max, chunk=chunk, warm=warm, export=export,
                command=_command_line(ctx),
                log=lambda message: status.update(f"measuring {message}"),
            )  # fmt: skip
        if json_path is not None:
            bench_report.save(report, json_path)
    out = Console(width=max(Console().width, 140))
    for part in bench_report.tables(report):
        out.print(part)
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
