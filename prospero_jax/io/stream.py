"""Streamed output: Program → a PGM or PNG file of any size, band by band, resumable.

Input: a Program, an image size, a target path (``.pgm`` or ``.png``) and the options of
:func:`prospero_jax.render`. Output: the file, identical to rendering the whole image and
writing it, with memory bounded by one band (``band_rows × size`` bytes) and what the
renderer needs for it.

How: bands of rows are rendered one at a time (:func:`prospero_jax.render` with ``rows``)
into a hidden partial file beside the target, ``.NAME.partial``, laid out as the final
PGM (header, then rows), so a band is written in place at its offset. A journal beside it,
``.NAME.partial.json``, names the render (program digest, size, region, z, dtype, band
height) and lists the bands written; a band enters the journal only after its bytes are
synced to disk. An interrupted render (Ctrl-C, a crash, a lost machine) leaves those two
files (unless no band was done yet) and never the target; the same command then skips
the bands already written.
When all are done, a PGM target is the partial file renamed; a PNG target is encoded from
it band by band (:func:`prospero_jax.io.image.write_png_bands`) and written atomically;
then the partial files are removed.

In a multi-process job (``jax.distributed``; the file on a file system all processes
share), process 0 prepares the partial file and holds its lock; after a barrier
(``multihost_utils.sync_global_devices``) every process takes its share of the bands not
yet written (every ``P``-th), writes them in place and keeps its own journal,
``.NAME.partial.P.json``; after another barrier process 0 checks every band is there and
finishes the file. Resuming reads every journal, so a render begun by one process can be
finished by several, or the other way round.

Invariants: the target appears complete or not at all; a journal for a different render
is never resumed (the partial files are started again); band ``i`` holds rows
``[i * band_rows, (i + 1) * band_rows)``.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Unpack

import jax
import numpy as np
from jax.experimental import multihost_utils

from prospero_jax.io.image import image_format, pnm_header, write_png_bands
from prospero_jax.ir.program import Program
from prospero_jax.renderers.render import render
from prospero_jax.renderers.view import MEMORY_LIMIT, Progress, Shorthand, View, resolve
from prospero_jax.runtime.files import FileWriteError, atomic_write, write_error

#: Rows per band by default: a 65536-wide band is then 128 MB.
BAND_ROWS = 2048
_JOURNAL_VERSION = 1


class StreamError(FileWriteError):
    """A streamed render stopped on an error while writing; the bands done were kept.

    ``partial`` and ``journal`` are the files kept (the same call resumes from them;
    ``resume=False``, or deleting them, starts again); ``kept`` and ``bands`` count bands.
    """

    def __init__(
        self, err: OSError, path: Path, partial: Path, journal: Path, kept: int, bands: int
    ) -> None:
        # The cause alone ("No space left on device"): the rest of the message says what
        # was kept, which a nested write's own words ("nothing was written") would deny.
        reason = os.strerror(err.errno) if err.errno else str(err)
        super().__init__(err.errno, reason, os.fspath(path))
        self.partial, self.journal, self.kept, self.bands = partial, journal, kept, bands

    def __str__(self) -> str:
        return (
            f"{self.filename}: {self.strerror}; {self.kept} of {self.bands} bands are kept in "
            f"{self.partial} (journal {self.journal.name})"
        )


@dataclass(frozen=True)
class StreamReport:
    """What :func:`render_to_file` did: the file, its bands, how many were rendered now
    (the rest were found written by an earlier, interrupted run) and the inside fraction."""

    path: Path
    bands: int
    rendered: int
    resumed: int
    inside: float


def partial_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The partial image and its journal for target ``path``."""
    target = Path(path)
    return (
        target.with_name(f".{target.name}.partial"),
        target.with_name(f".{target.name}.partial.json"),
    )


def render_to_file(
    program: Program,
    path: str | os.PathLike[str],
    size: int | View = 1024,
    *,
    band_rows: int | None = None,
    resume: bool = True,
    mode: str = "auto",
    progress: Progress | None = None,
    **options: Unpack[Shorthand],
) -> StreamReport:
    """Render ``program`` into ``path`` band by band (module docstring).

    What to draw and where to run are :func:`prospero_jax.render`'s (the whole image: no
    ``rows``). A band has ``band_rows`` rows (default :data:`BAND_ROWS`, fewer where the
    image is so wide that a band would pass ``MEMORY_LIMIT``). ``resume=False`` starts
    again even if an earlier run of the same render left bands. ``progress(done, total)``
    counts bands; its first call reports the bands found done.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"render_to_file(program, path, size): the path comes second (as render_file's), "
            f"got {type(path).__name__}"
        )
    view, where = resolve(size, options)  # validated before any file is made
    if view.rows is not None:
        raise ValueError("a file holds the whole image: render_to_file takes no rows")
    size, region, z, dtype = view.size, view.region, view.z, where.dtype
    out = Path(path)
    fmt = image_format(out)
    if fmt == ".ppm":
        raise ValueError(f"{out}: streamed renders are greyscale; write .pgm or .png")
    if band_rows is None:  # a band stays within what render() returns in memory
        band_rows = max(1, min(BAND_ROWS, MEMORY_LIMIT // size))
    if band_rows < 1:
        raise ValueError(f"band rows must be at least 1, got {band_rows}")
    partial, _ = partial_paths(out)
    header = pnm_header(size, size)
    identity = {
        "version": _JOURNAL_VERSION,
        "program": program.digest,
        "size": size,
        "region": list(region),
        "z": z,
        "rotation": view.rotation,
        "dtype": dtype,
        "exact": where.exact,
        "mode": mode,
        "band_rows": band_rows,
    }
    bands = [(r, min(r + band_rows, size)) for r in range(0, size, band_rows)]
    processes, me = jax.process_count(), jax.process_index()
    journal = _journal(out, me, processes)
    length = len(header) + size * size
    fd = -1
    try:
        if me == 0:  # the lead prepares the partial file and holds its lock throughout
            fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when fd is closed
            except BlockingIOError:
                os.close(fd)
                fd = -1
                raise ValueError(f"{out}: another render is writing it ({partial})") from None
            if not resume or _written(out, identity, fd, length) is None:
                try:
                    for stale in _journals(out):  # a fresh partial image: header, zeros
                        stale.unlink()
                    os.ftruncate(fd, 0)
                    _pwrite_all(fd, header, 0)
                    os.ftruncate(fd, length)
                    os.fsync(fd)
                    _record(journal, identity, {})
                except OSError as err:
                    partial.unlink(missing_ok=True)
                    journal.unlink(missing_ok=True)
                    raise write_error(
                        err, partial, "cannot start the image (nothing was kept)"
                    ) from None
        _barrier("prospero-stream-start", processes)
        if fd < 0:
            fd = os.open(partial, os.O_RDWR)
        found = _written(out, identity, fd, length) or {}
        mine = _read_journal(journal, identity) or {}
        todo = [i for i in range(len(bands)) if i not in found][me::processes]
        try:
            if progress is not None:
                progress(len(found), len(bands))
            for count, index in enumerate(todo, 1):
                start, stop = bands[index]
                band = render(program, view.band(start, stop), target=where, mode=mode)
                _pwrite_all(fd, band.tobytes(), len(header) + start * size)
                os.fsync(fd)
                recorded = {**mine, index: int(np.count_nonzero(band))}
                _record(journal, identity, recorded)
                mine = recorded  # kept only once the journal on disk says so
                if progress is not None:
                    progress(len(found) + count, len(bands))
        except BaseException as err:
            if processes == 1 and not found and not mine:  # nothing to resume: leave nothing
                partial.unlink(missing_ok=True)
                journal.unlink(missing_ok=True)
                if isinstance(err, OSError):
                    raise write_error(err, partial, "cannot write (nothing was kept)") from None
            elif isinstance(err, OSError):
                kept = len(found.keys() | mine.keys())  # mine started as a part of found
                raise StreamError(err, out, partial, journal, kept, len(bands)) from None
            raise
        _barrier("prospero-stream-rendered", processes)
        done = _written(out, identity, fd, length) or {}
        _barrier("prospero-stream-read", processes)
        if me == 0:  # still holding the lock
            if len(done) != len(bands):
                raise RuntimeError(f"{out}: bands {sorted(set(range(len(bands))) - set(done))} "
                                   "are missing: run the same command again")  # fmt: skip
            if fmt == ".pgm":
                os.replace(partial, out)
            else:
                pixels = _read_bands(partial, len(header), size, bands)
                try:
                    atomic_write(out, lambda f: write_png_bands(f, size, size, pixels))
                except OSError as err:
                    raise StreamError(err, out, partial, journal, len(bands), len(bands)) from None
                partial.unlink()
            for written in _journals(out):
                written.unlink()
        _barrier("prospero-stream-final", processes)
    finally:
        if fd >= 0:
            os.close(fd)
    return StreamReport(out, len(bands), len(todo), len(found), sum(done.values()) / size**2)


def _journal(target: Path, process: int, processes: int) -> Path:
    """The journal one process keeps: ``.NAME.partial.json``, or ``.NAME.partial.P.json``
    for process ``P`` of a multi-process job."""
    single = partial_paths(target)[1]
    return single if processes == 1 else single.with_name(f".{target.name}.partial.{process}.json")


def _journals(target: Path) -> list[Path]:
    """Every journal of ``target``'s render, whichever processes wrote them."""
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.partial*.json"))


def _barrier(name: str, processes: int) -> None:
    """Wait for every process of the job (``multihost_utils.sync_global_devices``)."""
    if processes > 1:
        multihost_utils.sync_global_devices(name)


def _written(target: Path, identity: dict[str, Any], fd: int, length: int) -> dict[int, int] | None:
    """The bands earlier runs of the same render wrote (index → inside pixels), from every
    journal; None if there is none, or any is of another render or the file is not whole."""
    journals = _journals(target)
    try:
        if not journals or os.fstat(fd).st_size != length:
            return None
    except OSError:
        return None
    done: dict[int, int] = {}
    for path in journals:
        bands = _read_journal(path, identity)
        if bands is None:
            return None
        done.update(bands)
    return done


def _read_journal(journal: Path, identity: dict[str, Any]) -> dict[int, int] | None:
    """One journal's bands (index → inside pixels); None if absent, damaged or foreign."""
    try:
        state = json.loads(journal.read_text())
        if state["render"] != identity:
            return None
        return {int(i): int(n) for i, n in state["done"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _record(journal: Path, identity: dict[str, Any], done: dict[int, int]) -> None:
    text = json.dumps({"render": identity, "done": {str(i): n for i, n in sorted(done.items())}})

    def write(f: BinaryIO) -> None:
        f.write(text.encode())

    atomic_write(journal, write)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _read_bands(
    partial: Path, offset: int, size: int, bands: list[tuple[int, int]]
) -> Iterator[np.ndarray]:
    """The partial image's bands, read back one at a time."""
    with open(partial, "rb") as f:
        for start, stop in bands:
            f.seek(offset + start * size)
            yield np.frombuffer(f.read((stop - start) * size), np.uint8).reshape(-1, size)
