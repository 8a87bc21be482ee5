"""A `.vm` file watched for edits: each change read, parsed and published as a :class:`Version`.

Input: a path, a poll interval and a callback.
Output: :attr:`Watch.current`, the newest :class:`Version` (an immutable value: the last good
program and its facts, and the error of the newest read, ``FILE:LINE: message``, if it
failed), replaced as a whole when something changes; ``on_change(version)`` is called
with each new one.

Invariants: a reader never waits. The file is read in the watcher's own thread, without
any lock a reader takes, so a file that takes a minute to parse leaves the old version
served meanwhile (:attr:`Watch.loading` says a read is under way). Only regular files are
opened, and without blocking (``load(..., regular_only=True)``): a FIFO, a device or a
socket at the path is an error, never a hang. A new version is published only when the
file's identity (inode, size, modification time) or the reason it cannot be read
changes: a file that stays missing is one version, not one per poll.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prospero_jax.ir.parse import VMError, load
from prospero_jax.ir.passes import describe
from prospero_jax.ir.program import Program

#: Seconds between two looks at the file.
POLL = 0.25


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
        on_change: Callable[[Version], None] | None = None,
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

    def check(self) -> bool:
        """Look at the file once; read and publish it if it changed. Whether it did."""
        with self._checking:
            seen = self._identity()
            if seen == self._seen:
                return False
            self._seen = seen
            self.loading = True
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
            self.on_change(self.current)
        return True

    def _identity(self) -> object:
        try:
            st = os.stat(self.path)
        except OSError as err:
            return ("unreadable", err.errno)
        return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read(self) -> tuple[Program | None, dict[str, Any] | None, str | None]:
        try:
            program = load(self.path, regular_only=True)
            return program, describe(program), None
        except VMError as err:
            return None, None, str(err)  # FILE:LINE: message; the last good program stays
        except (RecursionError, MemoryError) as err:  # a pathological file: say so, go on
            return None, None, f"{self.path}: cannot read: {type(err).__name__}"

    def start(self) -> Watch:
        """Read the file and keep watching it, in a daemon thread (``current`` is version 0
        until the first read is done)."""
        self._thread = threading.Thread(target=self._run, name="prospero-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        self.check()
        while not self._stop.wait(self.poll):
            self.check()
