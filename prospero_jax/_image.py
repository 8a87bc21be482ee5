"""Stage 5, image output: a uint8 image → a PGM or PNG file, written atomically.

Input: a 2-D uint8 array and a path whose extension picks the format (``.pgm``: binary
P5, the challenge's format; ``.png``: 8-bit greyscale, via Pillow).
Output: the file.

Invariant: the file appears complete or not at all. Bytes go to a temporary file in the
same directory, which is flushed, synced and renamed over the target; any error or
interruption (Ctrl-C included) removes the temporary file and leaves an existing target
untouched.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from jaxtyping import UInt8

FORMATS = (".pgm", ".png")


def image_format(path: str | os.PathLike[str]) -> str:
    """The format for ``path`` from its extension; ``ValueError`` if it is not supported."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{os.fspath(path)}: unsupported image format {suffix or '(none)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return suffix


def write_image(path: str | os.PathLike[str], pixels: UInt8[np.ndarray, "h w"]) -> Path:
    """Write ``pixels`` to ``path`` as PGM or PNG (by extension), atomically."""
    fmt = image_format(path)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image, got shape {pixels.shape}")
    writer = _write_pgm if fmt == ".pgm" else _write_png
    return atomic_write(path, lambda f: writer(f, pixels))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; give it a new file's mode
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_pgm(f: BinaryIO, pixels: np.ndarray) -> None:
    height, width = pixels.shape
    f.write(b"P5\n%d %d\n255\n" % (width, height))
    f.write(pixels.tobytes())


def _write_png(f: BinaryIO, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(f, format="PNG")


def read_pgm(path: str | os.PathLike[str]) -> UInt8[np.ndarray, "h w"]:
    """Read a binary (P5) PGM with maxval 255, as written by :func:`write_image`."""
    data = Path(path).read_bytes()
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+255\s", data)
    if header is None:
        raise ValueError(f"{os.fspath(path)}: not an 8-bit binary PGM")
    width, height = int(header[1]), int(header[2])
    pixels = np.frombuffer(data, dtype=np.uint8, offset=header.end())
    if pixels.size != width * height:
        raise ValueError(f"{os.fspath(path)}: expected {width * height} pixels, got {pixels.size}")
    return pixels.reshape(height, width)
