"""Stage 5b, streamed output: Program → a PGM or PNG file of any size, band by band, resumable.

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
it band by band (:func:`prospero_jax._image.write_png_bands`) and written atomically;
then the partial files are removed.

Invariants: the target appears complete or not at all; a journal for a different render
is never resumed (the partial files are started again); band ``i`` holds rows
``[i * band_rows, (i + 1) * band_rows)``.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import jax
import numpy as np

from prospero_jax._image import atomic_write, image_format, pnm_header, write_png_bands
from prospero_jax._render import render
from prospero_jax._tape import Program
from prospero_jax.reference import DEFAULT_REGION

#: Rows per band by default: a 65536-wide band is then 128 MB.
BAND_ROWS = 2048
_JOURNAL_VERSION = 1

Progress = Callable[[int, int], None]


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
    size: int,
    path: str | os.PathLike[str],
    *,
    band_rows: int = BAND_ROWS,
    resume: bool = True,
    region: tuple[float, float, float, float] = DEFAULT_REGION,
    z: float = 0.0,
    dtype: str = "float32",
    device: str | jax.Device | None = None,
    devices: str | Sequence[jax.Device] | None = None,
    mode: str = "auto",
    progress: Progress | None = None,
) -> StreamReport:
    """Render ``program`` at ``size × size`` into ``path`` band by band (module docstring).

    ``resume=False`` starts again even if an earlier run of the same render left bands.
    ``progress(done, total)`` counts bands; its first call reports the bands found done.
    """
    target = Path(path)
    fmt = image_format(target)
    if fmt == ".ppm":
        raise ValueError(f"{target}: streamed renders are greyscale; write .pgm or .png")
    if band_rows < 1:
        raise ValueError(f"band rows must be at least 1, got {band_rows}")
    if size < 1:
        raise ValueError(f"image size must be at least 1, got {size}")
    partial, journal = partial_paths(target)
    header = pnm_header(size, size)
    identity = {
        "version": _JOURNAL_VERSION,
        "program": program.digest,
        "size": size,
        "region": list(region),
        "z": z,
        "dtype": dtype,
        "band_rows": band_rows,
    }
    bands = [(r, min(r + band_rows, size)) for r in range(0, size, band_rows)]
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when fd is closed
        except BlockingIOError:
            raise ValueError(f"{target}: another render is writing it ({partial})") from None
        length = len(header) + size * size
        done = _resumable(journal, identity, fd, length) if resume else None
        if done is None:  # a fresh partial image: the header, then zeros (sparse)
            done = {}
            os.ftruncate(fd, 0)
            _pwrite_all(fd, header, 0)
            os.ftruncate(fd, length)
            os.fsync(fd)
            _record(journal, identity, done)
        resumed = len(done)
        try:
            if progress is not None:
                progress(resumed, len(bands))
            for index, (start, stop) in enumerate(bands):
                if index in done:
                    continue
                band = render(
                    program, size, rows=(start, stop), region=region, z=z, dtype=dtype,
                    device=device, devices=devices, mode=mode,
                )  # fmt: skip
                _pwrite_all(fd, band.tobytes(), len(header) + start * size)
                os.fsync(fd)
                done[index] = int(np.count_nonzero(band))
                _record(journal, identity, done)
                if progress is not None:
                    progress(len(done), len(bands))
        except BaseException:
            if not done:  # nothing worth resuming: leave nothing behind
                partial.unlink(missing_ok=True)
                journal.unlink(missing_ok=True)
            raise
        if fmt == ".pgm":  # still holding the lock
            os.replace(partial, target)
        else:
            pixels = _read_bands(partial, len(header), size, bands)
            atomic_write(target, lambda f: write_png_bands(f, size, size, pixels))
            partial.unlink()
        journal.unlink()
    finally:
        os.close(fd)
    return StreamReport(
        target, len(bands), len(bands) - resumed, resumed, sum(done.values()) / size**2
    )


def _resumable(
    journal: Path, identity: dict[str, Any], fd: int, length: int
) -> dict[int, int] | None:
    """The bands an earlier run of the same render wrote (index → inside pixels), or None."""
    try:
        state = json.loads(journal.read_text())
        if state["render"] != identity or os.fstat(fd).st_size != length:
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
