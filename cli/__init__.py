"""The ``prospero`` command-line tool (a typer app; see :mod:`cli.main`)."""

from cli.main import app

__all__ = ["app"]
