"""``prospero view``: a live, zoomable view of a `.vm` file in the browser
(:func:`prospero_jax.io.viewer.view`)."""

from __future__ import annotations

import time
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

import prospero_jax as pj
from cli.app import CacheOption, DeviceOption, DType, DTypeOption, app, option, target, user_errors
from prospero_jax.io import viewer as _viewer


@app.command()
def view(
    file: Annotated[Path, typer.Argument(help="The .vm program to watch and draw.")],
    host: Annotated[
        str, option("Address to serve on: loopback unless you say otherwise. [default: 127.0.0.1]")
    ] = "127.0.0.1",
    port: Annotated[int, option("Port to serve on; 0 picks a free one. [default: 0]", min=0)] = 0,
    browser: Annotated[
        bool, option("Open the page in a browser, when one is there. [default: open]")
    ] = True,
    dtype: DTypeOption = DType.float32,
    device: DeviceOption = None,
    cache: CacheOption = True,
) -> None:
    """Serve a live view of FILE: pan and zoom without limit, and see each edit as you save.

    The page re-renders the region on screen (culled; solids as lit heightmaps you turn by
    dragging), shows what `prospero info` says and each render's time, saves the view as
    PNG, and shows a parse error as FILE:LINE: message while keeping the last good image.
    Ctrl-C stops the server.

    Example: `prospero view ../shared/prospero.vm --port 8000`.
    """
    with user_errors():
        if not file.is_file():
            raise ValueError(f"{file}: no such file")
        if cache:
            pj.enable_compilation_cache()
        running = _viewer.view(file, host, port, target(dtype, device))
    url = running.url
    typer.echo(f"serving {file} at {url} (Ctrl-C stops)")
    if browser:
        webbrowser.open(url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.close()
