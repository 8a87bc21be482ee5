"""Stage 5, image output: a uint8 image → a PGM, PPM or PNG file, written atomically.

Input: a uint8 array, ``(h, w)`` greyscale or ``(h, w, 3)`` RGB, and a path whose
extension picks the format (``.pgm``: binary P5, greyscale, the challenge's format;
``.ppm``: binary P6, colour; ``.png``: either, via Pillow).
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

FORMATS = (".pgm", ".ppm", ".png")


def image_format(path: str | os.PathLike[str]) -> str:
    """The format for ``path`` from its extension; ``ValueError`` if it is not supported."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{os.fspath(path)}: unsupported image format {suffix or '(none)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return suffix


def check_image_format(path: str | os.PathLike[str], colour: bool) -> str:
    """:func:`image_format`, and ``ValueError`` if it cannot hold the image's kind."""
    fmt = image_format(path)
    if colour and fmt == ".pgm":
        raise ValueError(f"{os.fspath(path)}: PGM is greyscale; write colour as .png or .ppm")
    if not colour and fmt == ".ppm":
        raise ValueError(f"{os.fspath(path)}: PPM is for colour; write greyscale as .png or .pgm")
    return fmt


def write_image(
    path: str | os.PathLike[str], pixels: UInt8[np.ndarray, "h w"] | UInt8[np.ndarray, "h w 3"]
) -> Path:
    """Write ``pixels`` (greyscale or RGB) to ``path`` as PGM, PPM or PNG, atomically."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 2 and not (pixels.ndim == 3 and pixels.shape[2] == 3):
        raise ValueError(f"expected an (h, w) or (h, w, 3) image, got shape {pixels.shape}")
    fmt = check_image_format(path, colour=pixels.ndim == 3)
    writer = {".pgm": _write_pnm, ".ppm": _write_pnm, ".png": _write_png}[fmt]
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


def _write_pnm(f: BinaryIO, pixels: np.ndarray) -> None:
    height, width = pixels.shape[:2]
    magic = b"P5" if pixels.ndim == 2 else b"P6"
    f.write(b"%s\n%d %d\n255\n" % (magic, width, height))
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
