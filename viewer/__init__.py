"""The live viewer: an application beside the CLI, on prospero-jax's public API only.

:func:`serve` (``prospero view``) serves a watched `.vm` file's views over HTTP
(:mod:`viewer.server`); :mod:`viewer.watch` reads the file as it changes, off the server's
thread. Importing this package imports aiohttp (~0.4 s): the CLI imports it only to serve.
"""

from viewer.server import Viewer, serve

__all__ = ["Viewer", "serve"]
