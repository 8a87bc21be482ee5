"""Files written whole or not at all, and write errors that name the file.

Input: a path and a function that writes the file's bytes to a binary file object.
Output: the file, renamed into place only once complete and synced; on any error or
interruption the temporary file is removed and the path is untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO


class FileWriteError(OSError):
    """A file could not be written. ``str(err)`` is ``PATH: what happened``."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def write_error(err: OSError, path: str | os.PathLike[str], what: str) -> FileWriteError:
    """``err`` (from writing ``path``) as a :class:`FileWriteError` that says ``what``."""
    return FileWriteError(err.errno, f"{what}: {err.strerror or err}", os.fspath(path))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``.

    On any error (a full disk, a missing permission) or interruption the temporary file
    is removed and ``path`` is untouched; an ``OSError`` is raised as a
    :class:`FileWriteError` naming ``path``.
    """
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as err:
        raise write_error(err, target, "cannot write") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; give it a new file's mode
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(err, target, "cannot write (nothing was written)") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_format(path: str | os.PathLike[str], formats: Sequence[str], kind: str) -> str:
    """``path``'s suffix (lower case) if it is one of ``formats``; else ``ValueError``
    naming the file and the formats there are (``kind``: "image", "mesh")."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise ValueError(
            f"{os.fspath(path)}: unsupported {kind} format {suffix or '(none)'!r}; "
            f"use one of {', '.join(formats)}"
        )
    return suffix


def check_directory(path: str | os.PathLike[str]) -> None:
    """``ValueError`` naming ``path`` unless the directory it goes in exists: checked
    before the work whose result it will hold."""
    out = Path(path)
    if not out.parent.is_dir():
        raise ValueError(f"{out}: directory {out.parent} does not exist")
