"""A `.vm` file watched for edits: each change read, parsed and published as a :class:`Version`.

Input: a path, a poll interval and a callback.
Output: :attr:`Watch.current`, the newest :class:`Version` (an immutable value: the last good
program and its facts, and the error of the newest read, ``FILE:LINE: message``, if it
failed), replaced as a whole when something changes; ``on_change()`` is called when a
read starts (:attr:`Watch.loading`) and with each new version.

Invariants: a reader never waits. The file is read in the watcher's own thread, without
any lock a reader takes, so a file that takes a minute to parse leaves the old version
served meanwhile (:attr:`Watch.loading` says a read is under way); a file above
:data:`LARGE` is parsed in a worker process, so that readers' threads are not even slowed
by it. Only regular files are opened, and without blocking (``load(...,
regular_only=True)``): a FIFO, a device or a socket at the path is an error, never a
hang. A new version is published only when the file's identity (inode, size,
modification time) or the reason it cannot be read changes: a file that stays missing is
one version, not one per poll.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prospero_jax import Program, VMError, describe, load

#: Seconds between two looks at the file.
POLL = 0.25
#: Files larger than this (bytes) are read and described in a worker process: parsing
#: millions of lines in this one would hold the interpreter for tenths of a second at a
#: time (dict resizes, array conversions), stalling a server's event loop.
LARGE = 1 << 20


@dataclass(frozen=True)
class Version:
    """What the file held when last read: ``program`` and ``facts`` (``describe``) are the
    last good program's (None before the first), ``error`` the newest read's failure."""

    number: int = 0
    program: Program | None = None
    facts: dict[str, Any] | None = None
    error: str | None = None

    @property
    def solid(self) -> bool:
        """Whether the program's value depends on z (drawn as a heightmap)."""
        return bool(self.facts and self.facts["dimensions"] == 3)


class Watch:
    """Polls ``path`` every ``poll`` seconds in a daemon thread (:meth:`start`), or once per
    :meth:`check` call; publishes a new :class:`Version` when the file changes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: Callable[[], None] | None = None,
        poll: float = POLL,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.poll = poll
        self.current = Version()
        self.loading = False
        self._seen: object = None  # the identity (or failure) of the last file read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checking = threading.Lock()  # one read at a time; readers never take it
        self._worker: ProcessPoolExecutor | None = None

    def check(self) -> bool:
        """Look at the file once; read and publish it if it changed. Whether it did."""
        with self._checking:
            seen = self._identity()
            if seen == self._seen:
                return False
            self._seen = seen
            self.loading = True
            if self.on_change is not None:
                self.on_change()
            try:
                program, facts, error = self._read()
            finally:
                self.loading = False
            old = self.current
            self.current = Version(
                old.number + 1,
                program or old.program,
                facts or old.facts,
                error,
            )
        if self.on_change is not None:
            self.on_change()
        return True

    def _identity(self) -> object:
        try:
            st = os.stat(self.path)
        except OSError as err:
            return ("unreadable", err.errno)
        return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read(self) -> Read:
        try:
            large = os.stat(self.path).st_size > LARGE
        except OSError:
            large = False  # read() says why
        try:
            return self._read_elsewhere() if large else read(self.path)
        except Exception as err:  # anything else: reported, and the watcher goes on
            return None, None, f"{self.path}: cannot read: {type(err).__name__}: {err}"

    def _read_elsewhere(self) -> Read:
        """A large file, read in the worker process (started on first use, then kept)."""
        if self._worker is None:
            spawn = multiprocessing.get_context("spawn")  # no fork of a threaded process
            self._worker = ProcessPoolExecutor(
                1, mp_context=spawn, initializer=_exit_with, initargs=(os.getpid(),)
            )
        try:
            packed = self._worker.submit(_read_packed, str(self.path)).result()
        except BrokenProcessPool:  # killed (out of memory?): say so; a new one next time
            self._worker = None
            return None, None, f"{self.path}: cannot read: the reading process died"
        return _unpack(packed)

    def start(self) -> Watch:
        """Read the file and keep watching it, in a daemon thread (``current`` is version 0
        until the first read is done)."""
        self._thread = threading.Thread(target=self._run, name="prospero-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        self.check()
        while not self._stop.wait(self.poll):
            self.check()


Read = tuple[Program | None, dict[str, Any] | None, str | None]


def read(path: Path) -> Read:
    """The program in ``path`` and its facts, or the error that says why not."""
    try:
        program = load(path, regular_only=True)
        return program, describe(program), None
    except VMError as err:
        return None, None, str(err)  # FILE:LINE: message; the last good program stays
    except (RecursionError, MemoryError) as err:  # a pathological file: say so, go on
        return None, None, f"{path}: cannot read: {type(err).__name__}"


def _exit_with(parent: int) -> None:
    """In the worker process: exit when ``parent`` does (killed, it cannot say so), and
    leave Ctrl-C (sent to the whole process group) to the parent, which stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="prospero-exit-with-parent", daemon=True).start()


def _read_packed(path: str) -> tuple[Any, ...]:
    """In the worker process: :func:`read`, with the IDs as one string and their ends."""
    program, facts, error = read(Path(path))
    if program is None:
        return (error,)
    ends = np.cumsum([len(name) for name in program.ids])
    return (None, program.opcodes, program.args, program.consts, program.source,
            "".join(program.ids), ends, facts)  # fmt: skip


def _unpack(packed: tuple[Any, ...]) -> Read:
    """The worker's answer as a Program, the IDs cut out one at a time (unpickling millions
    of strings at once would hold the interpreter for half a second)."""
    if packed[0] is not None:
        return None, None, str(packed[0])
    _, opcodes, args, consts, source, names, ends, facts = packed
    starts = itertools.chain([0], _items(ends))
    ids = tuple(names[a:b] for a, b in zip(starts, _items(ends), strict=False))  # n + 1 starts
    return Program(opcodes, args, consts, ids, source), facts, None


def _items(array: np.ndarray, chunk: int = 1 << 15) -> Iterator[int]:
    """``array.tolist()``'s items, a chunk at a time: one ``tolist`` of millions would hold
    the interpreter (and the server's event loop) for a second."""
    for start in range(0, len(array), chunk):
        yield from array[start : start + chunk].tolist()
