"""What passes derive from a program, kept on disk: a warm process skips the passes.

Input: a name (what was derived, and from which program: its digest), a function that
builds the bytes and one that reads them back. Output: what ``read`` makes of the bytes,
taken from ``<cache>/derived/<build>-<name>.bin`` when a file holds bytes it can read,
else built now and stored there (atomically; a failed write only costs the next process
a rebuild).

Why: the sign program of prospero takes ~0.25 s to derive (:func:`prospero_jax.ir.
specialise.specialise`), half of what a warm single render spends beyond importing the
CLI; reading it back takes a few milliseconds.

Invariants: files are named by the package's build
(:func:`~prospero_jax.runtime.executables.build_tag`: jax, jaxlib and every module's
source), so an edited pass is never served by a file its old code made, and storing a
file removes other builds' files. Nothing touches the disk until
:func:`prospero_jax.enable_compilation_cache` names a cache directory (its executables'
sibling ``derived``); until then ``build`` runs every time. A file ``read`` refuses is
built again and replaced. Only builds that take :data:`WORTH_KEEPING_S` or more are kept,
and only the :data:`KEEP` most recently used files: a file read is touched, so what is
kept is what was used last, not what was written last (the viewer turning a solid writes
a sign program per view; before, 64 views pushed out prospero's, which every warm render
reads).
"""

from __future__ import annotations

import contextlib
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from prospero_jax.runtime import executables as _executables
from prospero_jax.runtime.files import atomic_write

T = TypeVar("T")
#: Builds quicker than this are not kept (a small program's sign program: ~1 ms).
WORTH_KEEPING_S = 0.02
#: At most this many files are kept, those used last (prospero's sign program: ~0.3 MB).
KEEP = 64


def directory() -> Path | None:
    """Where derived files are kept: beside the executables, or None (the disk is off)."""
    executables = _executables.store.directory
    return None if executables is None else executables.parent / "derived"


def kept(name: str, build: Callable[[], bytes], read: Callable[[bytes], T]) -> T:
    """``read(build())``, the bytes kept on disk under ``name`` (module docstring)."""
    folder = directory()
    if folder is None:
        return read(build())
    path = folder / f"{_executables.build_tag()}-{name}.bin"
    try:
        served = read(path.read_bytes())
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: the newest to keep (_keep_newest)
        return served
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        with contextlib.suppress(OSError):  # a damaged or foreign file: built again below
            path.unlink(missing_ok=True)
    started = time.perf_counter()
    data = build()
    if time.perf_counter() - started < WORTH_KEEPING_S:
        return read(data)  # cheaper to build again than to keep

    def write(stream: BinaryIO) -> None:
        stream.write(data)

    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
        _executables.evict_other_builds(folder)
        _keep_newest(folder)
    except OSError:
        pass  # the next process builds it again
    return read(data)


def _keep_newest(folder: Path) -> None:
    """Remove all but the :data:`KEEP` files written or read last (a sweep over many
    programs must not fill the disk; best effort)."""
    files = sorted(folder.glob("*.bin"), key=lambda f: f.stat().st_mtime, reverse=True)
    for stale in files[KEEP:]:
        stale.unlink(missing_ok=True)
