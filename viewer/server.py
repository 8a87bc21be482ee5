"""A live viewer: an HTTP server (aiohttp) that renders a watched `.vm` file's views on request.

Input: a `.vm` file path, a host and a port (0: a free one), a target.
Output: a running :class:`Viewer` (``.url``). Endpoints (GET and HEAD):

- ``/``: the page (plain HTML and JS, ``static/viewer.html``, no build step);
- ``/api/state``: JSON: the program's facts, whether it is 3-D, its version, whether a new
  version is being read, the newest read's error (``FILE:LINE: message``), the last
  render's figures;
- ``/api/render``: a PNG of a view: ``x0, x1, y0, y1`` (the region), ``size`` (pixels,
  16–2048; a solid's at most 512), for a solid ``yaw`` and ``pitch`` (degrees); optional
  ``client`` and ``seq`` (a request older than one its client has sent is dropped: 409)
  and ``ticket`` (a name the page may cancel it by);
- ``/api/live``: a WebSocket. The server pushes the state (as ``/api/state``) when the
  file changes and after each render; the page sends ``{"cancel": [ticket, ...]}`` for
  requests it no longer wants (dropped, 409, unless already drawn).

Invariants: requests never wait on the file: it is read in the watcher's thread
(:mod:`viewer.watch`: regular files only, never blocking) while the old version is
served. Renders run one at a time in their own thread, the event loop never blocks; each
new program's first view is drawn there unseen as soon as it is read (:data:`FIRST_VIEW`:
kernels loaded and closures compiled before the browser asks); at most
:data:`MAX_WAITING` wait (more get 503). Connections must send a request head
within ``timeout`` seconds of opening or of their last response (idle and half-sent
ones are closed), the listen backlog is :data:`BACKLOG`, a client that half-closes its
side after its request still gets the answer. Every bad request gets a 4xx with a
one-line reason (numbers are ASCII decimals; unknown or repeated parameters are
refused), every failure a one-line 5xx, and the server keeps serving; nothing is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import ipaddress
import json
import logging
import os
import re
import resource
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image

import prospero_jax as pj
from viewer.watch import POLL, Version, Watch

PAGE = Path(__file__).with_name("static") / "viewer.html"
#: Image sides a request may ask for, and a solid's (a heightmap costs a depth per pixel).
SIZES = (16, 2048)
SOLID_SIZE = 512
#: Seconds a connection may stay open without sending a whole request head.
TIMEOUT = 15.0
#: Connections the kernel queues before the server accepts them.
BACKLOG = 4096
#: Render requests that may wait behind the one being drawn; more are refused (503).
MAX_WAITING = 64
#: Open WebSockets (pages watching); more are refused (503).
MAX_LIVE = 256
#: Clients and tickets remembered for dropping stale and cancelled requests.
REMEMBERED = 4096
#: Seconds a render request waits for the file's first version before it is refused.
FIRST_READ = 120.0
#: The page's first view (``static/viewer.html``) and a solid's turn there: drawn, unseen,
#: as each new program is read, so the kernels it loads and the closures it compiles (~1 s
#: of the bear's) are ready when the browser asks.
FIRST_VIEW, FIRST_TURN = pj.View(256, (-1.0, 1.0, -1.0, 1.0)), (0.0, 0.0)  # yaw, pitch (°)

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[0-9]{1,9}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_RENDER_KEYS = {"x0", "x1", "y0", "y1", "size", "yaw", "pitch", "client", "seq", "ticket"}


class BadRequest(ValueError):
    """A request the server refuses: ``str(err)`` is the reason sent back with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Ask:
    """One render request, validated: what to draw and who asked."""

    region: tuple[float, float, float, float]
    size: int
    yaw: float
    pitch: float
    client: str
    seq: int | None  # None: not subject to being overtaken
    ticket: str


def parse_render(query: Mapping[str, str] | Any) -> Ask:
    """An :class:`Ask` from a render request's query (a multidict), or :class:`BadRequest`."""
    for key in query:
        if key not in _RENDER_KEYS:
            raise BadRequest(f"unknown parameter {key[:40]!r}")
        if hasattr(query, "getall") and len(query.getall(key)) > 1:
            raise BadRequest(f"{key}: given more than once")

    def number(key: str, default: float | None = None) -> float:
        if key not in query:
            if default is None:
                raise BadRequest(f"{key}: missing")
            return default
        text = query[key]
        if not _DECIMAL.fullmatch(text):
            raise BadRequest(f"{key}: not a finite decimal number: {text[:40]!r}")
        value = float(text)
        if not abs(value) <= pj.REGION_LIMIT:
            raise BadRequest(f"{key}: must be finite and at most {pj.REGION_LIMIT:g} in size")
        return value

    def whole(key: str, default: int, lo: int, hi: int, what: str) -> int:
        text = query.get(key)
        if text is None:
            return default
        if not _WHOLE.fullmatch(text) or not lo <= int(text) <= hi:
            raise BadRequest(f"{key}: {what}, got {text[:40]!r}")
        return int(text)

    def name(key: str) -> str:
        text = query.get(key, "")
        if text and not _NAME.fullmatch(text):
            raise BadRequest(f"{key}: 1 to 64 letters, digits, '_', '.' or '-'")
        return str(text)

    x0, x1, y0, y1 = (number(k) for k in ("x0", "x1", "y0", "y1"))
    if not (x0 < x1 and y0 < y1):
        raise BadRequest(f"region: need x0 < x1 and y0 < y1, got {x0}, {x1}, {y0}, {y1}")
    if "size" not in query:
        raise BadRequest("size: missing")
    lo, hi = SIZES
    size = whole("size", 0, lo, hi, f"a whole number of pixels from {lo} to {hi}")
    seq = whole("seq", -1, 0, 10**9 - 1, "a whole number below 1e9")
    return Ask((x0, x1, y0, y1), size, number("yaw", 0.0), number("pitch", 0.0),
               name("client"), None if seq < 0 else seq, name("ticket"))  # fmt: skip


class _Wanted:
    """Which render requests are still wanted: each client's newest ``seq`` and the
    cancelled tickets, the most recent :data:`REMEMBERED` of each (read from the render
    thread, written from the event loop: one short lock)."""

    def __init__(self) -> None:
        self._newest: OrderedDict[str, int] = OrderedDict()
        self._cancelled: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def sent(self, ask: Ask) -> None:
        if ask.client and ask.seq is not None:
            with self._lock:
                self._newest[ask.client] = max(self._newest.pop(ask.client, -1), ask.seq)
                _trim(self._newest)

    def cancel(self, client: str, tickets: list[str]) -> None:
        with self._lock:
            for ticket in tickets:
                self._cancelled[(client, ticket)] = None
            _trim(self._cancelled)

    def wanted(self, ask: Ask) -> bool:
        with self._lock:
            newest = self._newest.get(ask.client, -1)
            overtaken = ask.seq is not None and bool(ask.client) and ask.seq < newest
            return not overtaken and (ask.client, ask.ticket) not in self._cancelled


def _trim(remembered: OrderedDict[Any, Any]) -> None:
    while len(remembered) > REMEMBERED:
        remembered.popitem(last=False)


class _Connection(web.RequestHandler):
    """aiohttp's HTTP/1.1 connection, answering clients that half-close: the end of their
    input leaves our side open to send the answer to what they asked, then it closes."""

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio: True keeps it open
        self.close()  # no more requests: finish the one in progress, then close
        return True


class _Server(web.Server):
    """aiohttp's low-level server, making :class:`_Connection` connections."""

    def __init__(self, handler: Any, timeout: float) -> None:
        super().__init__(handler, keepalive_timeout=timeout)
        self._timeout = timeout

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=asyncio.get_running_loop(), keepalive_timeout=self._timeout)


class Viewer:
    """A watched file, its renders and the server (module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        target: pj.Target | None = None,
        *,
        timeout: float = TIMEOUT,
        poll: float = POLL,
    ) -> None:
        self.path = Path(path)
        self.target = target or pj.Target()
        # A solid is turned view after view: its compiled closures are bought at its
        # first view, not rented (unless the target names its tier).
        tier = "compiled" if self.target.tier == "auto" else self.target.tier
        self.solids = dataclasses.replace(self.target, tier=tier)
        self.timeout = timeout
        self.watch = Watch(self.path, self._changed, poll)
        self.last: dict[str, Any] = {}
        self.host = "127.0.0.1"
        self.port = 0
        self._renders = ThreadPoolExecutor(1, thread_name_prefix="prospero-render")
        self._waiting = 0
        self._wanted = _Wanted()
        self._live: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first: asyncio.Event | None = None
        self._read = threading.Event()  # the file's first read is done
        self._prepared: pj.Program | None = None  # the last program whose first view was queued
        self.prepared = threading.Event()  # set when that draw ends (for tests, benchmarks)
        self._thread: threading.Thread | None = None
        self._routes: dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]] = {
            "/": self._page,
            "/api/state": self._state,
            "/api/render": self._render,
            "/api/live": self._live_socket,
        }

    # --- state ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What ``/api/state`` answers (module docstring)."""
        version = self.watch.current
        return {
            "file": str(self.path),
            "version": version.number,
            "loading": self.watch.loading,
            "error": version.error,
            "facts": version.facts,
            "solid": version.solid,
            "last": dict(self.last),
        }

    def _changed(self) -> None:
        """From the watcher's thread: wake the requests waiting for a first version, push;
        a new program's first view drawn, unseen (:data:`FIRST_VIEW`)."""
        if self.watch.current.number > 0:
            self._read.set()
            self._prepare(self.watch.current)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                loop.call_soon_threadsafe(self._push)

    def _push(self) -> None:
        if self._first is not None and self.watch.current.number > 0:
            self._first.set()
        for wake in self._live:
            wake.set()

    def _prepare(self, version: Version) -> None:
        """Queue, in the render thread, the page's first view of ``version``'s program if it
        is new (a failed read keeps the last good program: nothing to do)."""
        program = version.program
        if program is None or program is self._prepared:
            return
        self._prepared = program
        self.prepared.clear()
        with contextlib.suppress(RuntimeError):  # the server closed meanwhile
            self._renders.submit(self._first_view, version)

    def _first_view(self, version: Version) -> None:
        """In the render thread: :data:`FIRST_VIEW` of ``version``'s program, drawn as a
        request would draw it and thrown away (skipped if a newer program came meanwhile; a
        failure is a request's to report, not this one's)."""
        try:
            if version.program is None or self.watch.current.program is not version.program:
                return
            with contextlib.suppress(Exception):
                if version.solid:
                    turned = dataclasses.replace(FIRST_VIEW, rotation=pj.rotation(*FIRST_TURN))
                    pj.render_heightmap(version.program, turned, target=self.solids)
                else:
                    pj.render(version.program, FIRST_VIEW, target=self.target)
        finally:
            if version.program is self._prepared:  # not while a newer one's is queued
                self.prepared.set()

    # --- serving -------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start the server and the watcher in background threads; the URL. A host or port
        that cannot be served on raises ``OSError`` here."""
        _raise_descriptor_limit()
        for name in ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.websocket"):
            logging.getLogger(name).disabled = True  # failures are answered, not printed
        started = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                runner = loop.run_until_complete(self._start(host, port))
            except BaseException as err:
                failed.append(err)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="prospero-viewer", daemon=True)
        self._thread.start()
        started.wait()
        if failed:
            raise failed[0]
        self.watch.start()
        return self.url

    async def _start(self, host: str, port: int) -> web.BaseRunner:
        self._first = asyncio.Event()
        runner = web.ServerRunner(
            _Server(self._handle, self.timeout), handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=BACKLOG, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.host, self.port = host, int(runner.addresses[0][1])
        return runner

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the file has been read once (the server answers meanwhile: renders
        wait for it, the state says ``loading``); whether it was within ``timeout``."""
        return self._read.wait(timeout)

    @property
    def url(self) -> str:
        """Where the page is: the host served on (loopback as ``localhost``), the port bound."""
        if self.host in ("127.0.0.1", "::1", "localhost"):
            name = "localhost"
        else:
            name = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{name}:{self.port}/"

    @property
    def exposed(self) -> bool:
        """Whether the host served on is reachable from other machines (not loopback)."""
        return reachable(self.host)

    def close(self) -> None:
        """Stop serving (open connections are closed) and watching."""
        self.watch.stop()
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._renders.shutdown(wait=False, cancel_futures=True)

    # --- requests ------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get(request.path)
        if route is None:
            return _text(404, f"no such page: {request.path[:80]}")
        if request.method not in ("GET", "HEAD"):
            return _text(405, f"{request.method[:16]}: only GET and HEAD", Allow="GET, HEAD")
        try:
            return await route(request)
        except BadRequest as err:
            return _text(err.status, str(err))
        except Exception as err:  # a failure: say so in one line, keep serving
            return _text(500, f"internal error: {type(err).__name__}: {err}"[:300])

    async def _page(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})  # fmt: skip

    async def _state(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response(self.state(), headers={"Cache-Control": "no-store"})

    async def _render(self, request: web.BaseRequest) -> web.StreamResponse:
        ask = parse_render(request.query)
        if self.watch.current.number == 0:  # the file's first read is under way
            assert self._first is not None
            try:
                await asyncio.wait_for(self._first.wait(), FIRST_READ)
            except TimeoutError:
                raise BadRequest(f"still reading {self.path}: try again", 503) from None
        if request.method == "HEAD":
            _check_size(ask, self.watch.current)
            return web.Response(content_type="image/png", headers={"Cache-Control": "no-store"})
        if self._waiting >= MAX_WAITING:
            raise BadRequest(f"busy: {self._waiting} renders are waiting, try again", 503)
        self._wanted.sent(ask)
        self._waiting += 1
        try:
            png = await asyncio.get_running_loop().run_in_executor(self._renders, self._draw, ask)
        finally:
            self._waiting -= 1
        self._push()  # the last render's figures
        if png is None:
            return _text(409, "stale request: dropped (overtaken or cancelled)")
        return web.Response(body=png, content_type="image/png",
                            headers={"Cache-Control": "no-store"})  # fmt: skip

    def _draw(self, ask: Ask) -> bytes | None:
        """In the render thread: the PNG ``ask`` wants, or None if it is no longer wanted."""
        if not self._wanted.wanted(ask):
            return None
        version = self.watch.current
        program = version.program
        if program is None:
            raise BadRequest(f"no program to draw: {version.error}")
        _check_size(ask, version)
        started = time.perf_counter()
        levels: list[dict[str, Any]] = []
        try:
            if version.solid:
                turned = pj.View(ask.size, ask.region, rotation=pj.rotation(ask.yaw, ask.pitch))
                heightmap = pj.render_heightmap(program, turned, target=self.solids)
                pixels = pj.shade_heightmap(heightmap, "lit")
            else:
                view = pj.View(ask.size, ask.region)
                pixels = pj.render(program, view, target=self.target, stats=levels)
        except Exception as err:
            raise BadRequest(f"render failed: {type(err).__name__}: {err}"[:300], 422) from None
        seconds = time.perf_counter() - started
        self.last = {"seconds": seconds, "size": ask.size, "region": ask.region,
                     "solid": version.solid, "inside": float(np.mean(pixels > 0)),
                     "levels": [{k: level[k] for k in ("tile", "tapes", "rows")}
                                for level in levels]}  # fmt: skip
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    async def _live_socket(self, request: web.BaseRequest) -> web.StreamResponse:
        if len(self._live) >= MAX_LIVE:
            raise BadRequest(f"busy: {MAX_LIVE} pages are watching already", 503)
        client = request.query.get("client", "")
        if client and not _NAME.fullmatch(client):
            raise BadRequest("client: 1 to 64 letters, digits, '_', '.' or '-'")
        socket_ = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 16)
        if not socket_.can_prepare(request).ok:
            raise BadRequest("/api/live is a WebSocket: connect with one")
        await socket_.prepare(request)
        wake = asyncio.Event()
        wake.set()  # the state, now
        self._live.add(wake)

        async def send() -> None:
            while True:
                await wake.wait()
                wake.clear()
                await socket_.send_str(json.dumps(self.state()))

        sender = asyncio.create_task(send())
        try:
            async for message in socket_:
                if message.type != WSMsgType.TEXT:
                    continue
                tickets = _cancelled(message.data)
                if tickets is None:
                    await socket_.send_str(
                        json.dumps({"refused": 'expected {"cancel": [ticket, ...]}'})
                    )
                else:
                    self._wanted.cancel(client, tickets)
        finally:
            self._live.discard(wake)
            sender.cancel()
        return socket_


def _cancelled(text: str) -> list[str] | None:
    """The tickets a page's ``{"cancel": [...]}`` message names, or None if malformed."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    tickets = message.get("cancel") if isinstance(message, dict) else None
    if not isinstance(tickets, list) or len(tickets) > 1024:
        return None
    if not all(isinstance(t, str) and _NAME.fullmatch(t) for t in tickets):
        return None
    return tickets


def _check_size(ask: Ask, version: Version) -> None:
    if version.solid and ask.size > SOLID_SIZE:
        raise BadRequest(f"size: a solid's view is at most {SOLID_SIZE} px, got {ask.size}")


def _text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


def _raise_descriptor_limit() -> None:
    """Let the server hold as many connections as the system allows (idle ones included,
    until they time out): the soft limit on open files raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def reachable(host: str) -> bool:
    """Whether serving on ``host`` is reachable from other machines: any of its addresses
    is not a loopback one (``0.0.0.0`` and ``::`` are every interface)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    for info in infos:
        address = str(info[4][0]).split("%")[0]
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(address).is_loopback:
                return True
    return False


def serve(
    path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    target: pj.Target | None = None,
    *,
    timeout: float = TIMEOUT,
) -> Viewer:
    """Serve ``path``'s views (module docstring); the running :class:`Viewer`."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, got {port}")
    viewer = Viewer(Path(path), target, timeout=timeout)
    viewer.serve(host, port)
    return viewer
