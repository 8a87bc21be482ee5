"""Image files: a uint8 image → a PGM, PPM or PNG file, written atomically.

Input: a uint8 array, ``(h, w)`` greyscale or ``(h, w, 3)`` RGB, and a path whose
extension picks the format (``.pgm``: binary P5, greyscale, the challenge's format;
``.ppm``: binary P6, colour; ``.png``: either, via Pillow).
Output: the file.

:func:`write_png_bands` streams a greyscale PNG band by band (for images too large to
hold: PIL encodes only whole images in memory), with ``zlib`` from the standard library.

Invariant: the file appears complete or not at all. Bytes go to a temporary file in the
same directory, which is flushed, synced and renamed over the target; any error or
interruption (Ctrl-C included) removes the temporary file and leaves an existing target
untouched.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from jaxtyping import UInt8

from prospero_jax.runtime.files import atomic_write, file_format

FORMATS = (".pgm", ".ppm", ".png")


def image_format(path: str | os.PathLike[str]) -> str:
    """The format for ``path`` from its extension; ``ValueError`` if it is not supported."""
    return file_format(path, FORMATS, "image")


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


def _write_pnm(f: BinaryIO, pixels: np.ndarray) -> None:
    height, width = pixels.shape[:2]
    f.write(pnm_header(width, height, colour=pixels.ndim == 3))
    f.write(pixels.tobytes())


def _write_png(f: BinaryIO, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(f, format="PNG")


def write_png_bands(
    f: BinaryIO, width: int, height: int, bands: Iterable[UInt8[np.ndarray, "rows width"]]
) -> None:
    """Write an 8-bit greyscale PNG to ``f`` from ``bands`` of rows, top to bottom.

    Memory is one band plus zlib's window. The bands' rows must add up to ``height``.
    """
    f.write(b"\x89PNG\r\n\x1a\n")
    _png_chunk(f, b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    compressor = zlib.compressobj(6)
    written = 0
    for band in bands:
        band = np.asarray(band, np.uint8)
        if band.ndim != 2 or band.shape[1] != width:
            raise ValueError(f"expected bands of {width} columns, got shape {band.shape}")
        filtered = np.zeros((band.shape[0], width + 1), np.uint8)  # filter type 0: none
        filtered[:, 1:] = band
        written += band.shape[0]
        data = compressor.compress(filtered.tobytes())
        if data:
            _png_chunk(f, b"IDAT", data)
    if written != height:
        raise ValueError(f"expected {height} rows, got {written}")
    _png_chunk(f, b"IDAT", compressor.flush())
    _png_chunk(f, b"IEND", b"")


def _png_chunk(f: BinaryIO, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)))
    f.write(kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def pnm_header(width: int, height: int, colour: bool = False) -> bytes:
    """The header of a binary PGM (P5) or PPM (P6) with maxval 255."""
    return b"%s\n%d %d\n255\n" % (b"P6" if colour else b"P5", width, height)


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
