"""``prospero view``: a live, zoomable view of a `.vm` file in the browser
(:func:`viewer.serve`, the viewer application)."""

from __future__ import annotations

import os
import socket
import threading
import webbrowser
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
    app,
    option,
    target,
    user_errors,
)


@app.command()
def view(
    file: Annotated[Path, typer.Argument(help="The .vm program to watch and draw.")],
    host: Annotated[
        str,
        option(
            "Address to serve on: loopback unless you say otherwise (0.0.0.0 or :: is every "
            "interface: anyone who reaches this machine can then use it). [default: 127.0.0.1]"
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, option("Port to serve on, 1–65535; 0 picks a free one. [default: 0]", min=0, max=65535)
    ] = 0,
    browser: Annotated[
        bool, option("Open the page in a browser, when one is there. [default: open]")
    ] = True,
    dtype: DTypeOption = DType.float32,
    device: DeviceOption = None,
    exact: ExactOption = False,
    cache: CacheOption = True,
) -> None:
    """Serve a live view of FILE: pan and zoom without limit, and see each edit as you save.

    The page re-renders the region on screen (culled; solids as lit heightmaps you turn by
    dragging), shows what `prospero info` says and each render's time, saves the view as
    PNG, and shows a parse error as FILE:LINE: message while keeping the last good image.
    Edits are pushed to the page as you save. Ctrl-C stops the server.

    Example: `prospero view ../shared/prospero.vm --port 8000`.
    """
    with user_errors():
        if not file.exists():
            raise ValueError(f"{file}: no such file")
        if not file.is_file():
            raise ValueError(f"{file}: not a regular file (the viewer watches a .vm file)")
        if cache:
            pj.enable_compilation_cache()
        # Imported here: the server (aiohttp) is 0.4 s of every other command's start.
        import viewer

        try:
            running = viewer.serve(file, host, port, target(dtype, device, exact=exact))
        except OSError as err:  # asyncio's bind message repeats the address: the reason alone
            gai = isinstance(err, socket.gaierror)
            reason = os.strerror(err.errno) if err.errno and not gai else err.strerror or str(err)
            raise ValueError(f"cannot serve on {host}:{port}: {reason}") from None
    if running.exposed:
        typer.echo(
            f"warning: serving on {host}, reachable from other machines: anyone who can "
            f"reach this one can read {file}'s pictures and make it render "
            "(--host 127.0.0.1 keeps it local)",
            err=True,
        )
    typer.echo(f"serving {file} at {running.url} (Ctrl-C stops)")
    if browser:
        webbrowser.open(running.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        running.close()
