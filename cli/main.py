"""The ``prospero`` command line: one module per command, registered on one typer app.

:mod:`cli.app` holds the app and what the commands share (one-line errors, options,
progress bars); each command's module (``render``, ``render3d``, ``mesh``, ``sweep``,
``info``, ``bench``, ``view``)
parses its options into the library's value types and makes one library call. A new
command is a new module here, imported below.
"""

from __future__ import annotations

from cli import bench, info, mesh, render, render3d, sweep, view
from cli.app import app

__all__ = ["app", "bench", "info", "mesh", "render", "render3d", "sweep", "view"]
