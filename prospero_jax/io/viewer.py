"""A live viewer: a local HTTP server that renders a `.vm` file's views on request.

Input: a `.vm` file path, a host and a port (0: a free one).
Output: a running :class:`Viewer` (``.url``): ``GET /`` is the page (plain HTML and JS,
``static/viewer.html``, no build step); ``GET /api/state`` is JSON (the program's facts,
whether it is 3-D, its version, the last parse error as ``FILE:LINE: message``, and the
last render's figures); ``GET /api/render`` is a PNG of a view: ``x0, x1, y0, y1`` (the
region), ``size`` (pixels, 16–2048), for a solid also ``yaw`` and ``pitch`` (degrees),
with ``client`` and ``seq`` naming the request.

Invariants: the file is re-read when it changes (polled); a parse error keeps the last good
program and is reported, never served as a picture. Renders are serialized (one at a time
on the device); a request older than one its client has already sent (``seq``), or whose
client has hung up, is dropped before rendering. A malformed or absurd request gets a 4xx
with a one-line reason, and the server keeps serving.
"""

from __future__ import annotations

import io
import json
import math
import os
import select
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

from prospero_jax.ir.parse import VMError, load
from prospero_jax.ir.passes import describe
from prospero_jax.ir.program import Program
from prospero_jax.renderers.culled import render_culled
from prospero_jax.renderers.heightmap import render_heightmap, shade_heightmap, view_rotation
from prospero_jax.renderers.render import render
from prospero_jax.renderers.view import REGION_LIMIT, Target, View, culls

PAGE = Path(__file__).with_name("static") / "viewer.html"
#: Image sides a request may ask for, and a solid's (a heightmap costs a depth per pixel).
SIZES = (16, 2048)
SOLID_SIZE = 512  # the page asks for 256 and stretches it: a heightmap costs N³
#: How often the file is checked for changes, in seconds.
POLL = 0.25


class BadRequest(ValueError):
    """A request the server refuses: ``str(err)`` is the reason sent back (HTTP 400)."""


class Viewer:
    """The viewer's state: the file, its last good program and error, the render lock."""

    def __init__(self, path: Path, target: Target | None = None) -> None:
        self.path = Path(path)
        self.target = target or Target()
        self.program: Program | None = None
        self.facts: dict[str, Any] | None = None  # describe(program), once per version
        self.error: str | None = None
        self.version = 0
        self.stamp: tuple[float, int] | None = None
        self.last: dict[str, Any] = {}
        self.latest: dict[str, int] = {}  # client → the newest seq it has sent
        self.render_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.host = "127.0.0.1"
        self.reload()

    def reload(self) -> bool:
        """Re-read the file if it changed; whether anything changed."""
        stamp: tuple[float, int] | None = None
        missing: str | None = None
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime, stat.st_size)
        except OSError as err:
            missing = f"{self.path}: {err.strerror or err}"
        if stamp is not None and stamp == self.stamp:
            return False
        with self.state_lock:
            self.stamp = stamp
            self.version += 1
            if missing is not None:
                self.error = missing
                return True
            try:
                self.program = load(self.path)
                self.facts = describe(self.program)
                self.error = None
            except VMError as err:
                self.error = str(err)  # FILE:LINE: message; the last good program stays
        return True

    def state(self) -> dict[str, Any]:
        with self.state_lock:
            facts = self.facts
            return {
                "file": str(self.path),
                "version": self.version,
                "error": self.error,
                "facts": facts,
                "solid": bool(facts and facts["dimensions"] == 3),
                "last": dict(self.last),
            }

    def image(self, query: dict[str, str], gone: Any = None) -> bytes | None:
        """The PNG of the view ``query`` asks for; None if the request went stale."""
        region, size, client, seq = _view(query)
        solid = self.state()["solid"]
        if solid and size > SOLID_SIZE:
            raise BadRequest(f"size: a solid's view is at most {SOLID_SIZE} px, got {size}")
        yaw, pitch = (_number(query, k, 0.0) for k in ("yaw", "pitch"))
        with self.state_lock:
            if client:
                self.latest[client] = max(self.latest.get(client, -1), seq)
        with self.render_lock:
            with self.state_lock:
                program = self.program
                stale = bool(client) and seq < self.latest.get(client, -1)
            if program is None:
                raise BadRequest(f"no program to draw: {self.error}")
            if stale or (gone is not None and gone()):
                return None
            started = time.perf_counter()
            if solid:
                heightmap = render_heightmap(
                    program, size, region=region, target=self.target,
                    rotation=view_rotation(yaw, pitch),
                )  # fmt: skip
                pixels = shade_heightmap(heightmap, "lit")
                levels: list[dict[str, Any]] = []
            elif culls("auto", self.target):
                levels = []
                with self.target.precision():
                    what = View(size, region)
                    pixels = render_culled(program, what, self.target, stats=levels)
            else:
                pixels, levels = render(program, size, region=region, target=self.target), []
            seconds = time.perf_counter() - started
        with self.state_lock:
            self.last = {"seconds": seconds, "size": size, "region": region, "solid": solid,
                         "inside": float(np.mean(pixels > 0)),
                         "levels": [{k: level[k] for k in ("tile", "tapes", "rows")}
                                    for level in levels]}  # fmt: skip
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving in background threads; the URL."""
        handler = type("Handler", (_Handler,), {"viewer": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()
        self.host = host
        return self.url

    @property
    def url(self) -> str:
        """Where the page is: the host served on (loopback as ``localhost``), the port bound."""
        assert self.server is not None, "not serving"
        name = "localhost" if self.host in ("127.0.0.1", "::1", "localhost") else self.host
        return f"http://{name}:{self.server.server_address[1]}/"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _watch(self) -> None:
        while self.server is not None:
            self.reload()
            time.sleep(POLL)


def _number(query: dict[str, str], key: str, default: float | None = None) -> float:
    if key not in query:
        if default is None:
            raise BadRequest(f"{key}: missing")
        return default
    try:
        value = float(query[key])
    except ValueError:
        raise BadRequest(f"{key}: not a number: {query[key]!r}") from None
    if not math.isfinite(value) or abs(value) > REGION_LIMIT:
        raise BadRequest(f"{key}: must be finite and at most {REGION_LIMIT:g} in size")
    return value


def _view(query: dict[str, str]) -> tuple[tuple[float, float, float, float], int, str, int]:
    """Region, size, client and sequence number of a render request (or BadRequest)."""
    x0, x1, y0, y1 = (_number(query, k) for k in ("x0", "x1", "y0", "y1"))
    if not (x0 < x1 and y0 < y1):
        raise BadRequest(f"region: need x0 < x1 and y0 < y1, got {x0}, {x1}, {y0}, {y1}")
    size = _number(query, "size")
    if size != int(size) or not SIZES[0] <= size <= SIZES[1]:
        raise BadRequest(f"size: a whole number of pixels from {SIZES[0]} to {SIZES[1]}")
    seq = _number(query, "seq", 0.0)
    return (x0, x1, y0, y1), int(size), query.get("client", "")[:64], int(seq)


class _Handler(BaseHTTPRequestHandler):
    viewer: Viewer
    server_version = "prospero-view"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the URL
        return

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.read_bytes())
            elif url.path == "/api/state":
                body = json.dumps(self.viewer.state()).encode()
                self._send(HTTPStatus.OK, "application/json", body)
            elif url.path == "/api/render":
                png = self.viewer.image(query, gone=self._gone)
                if png is None:  # stale, or its client hung up: nothing rendered
                    self._send(HTTPStatus.CONFLICT, "text/plain", b"stale request: dropped")
                else:
                    self._send(HTTPStatus.OK, "image/png", png)
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", f"no such page: {url.path}".encode())
        except BadRequest as err:
            self._send(HTTPStatus.BAD_REQUEST, "text/plain", str(err).encode())
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away
        except Exception as err:  # a render that failed: say so, keep serving
            message = f"render failed: {type(err).__name__}: {err}".encode()
            self._send(HTTPStatus.UNPROCESSABLE_ENTITY, "text/plain", message)

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _gone(self) -> bool:
        """Whether the client closed its connection (a readable socket with nothing to read)."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def view(path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0,
         target: Target | None = None) -> Viewer:  # fmt: skip
    """Serve ``path``'s views (module docstring); the running :class:`Viewer`."""
    viewer = Viewer(Path(path), target)
    viewer.serve(host, port)
    return viewer
