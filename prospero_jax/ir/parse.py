"""Parsing: `.vm` text → :class:`~prospero_jax.ir.program.Program`.

Input: text in the Prospero `.vm` format (one ``ID OPCODE ARG...`` per line; blank lines
and lines starting with ``#`` are comments), or a path to such a file (at most
:data:`MAX_BYTES`).
Output: a Program whose instructions are the file's, in order, with the file's IDs.

The reading is strict where leniency would surprise: lines end at ``\n``, ``\r\n`` or
``\r`` only (so line numbers are an editor's), fields are separated by ASCII spaces and
tabs, constants are ASCII decimal numbers, and a leading UTF-8 byte-order mark is skipped.

Invariant: any input that is not a well-formed program raises :class:`VMError` naming the
source, the 1-based line and what is wrong (echoing at most :data:`ECHO` characters of
the offending text); nothing else escapes (no ``KeyError``, ``UnicodeDecodeError``,
``MemoryError`` or ``ValueError`` from deep inside).
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from collections.abc import Callable, Iterator

import numpy as np

from prospero_jax.ir.ops import CONST, OPCODE, OPS, PARAMS
from prospero_jax.ir.program import Program

#: Largest `.vm` file read (prospero is 149 kB; 64 MiB holds millions of instructions).
MAX_BYTES = 64 * 2**20
#: Longest piece of the input echoed in an error message.
ECHO = 40
_LINES = re.compile(r"\r\n|\r|\n")
_FIELDS = re.compile(r"[ \t\f\v]+")
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|nan)", re.I
)
_ODD_SPACE = re.compile(r"[^\S \t\f\v]")  # whitespace that is not a field separator


def _echo(text: str) -> str:
    """``repr`` of ``text``, clipped to :data:`ECHO` characters."""
    return repr(text if len(text) <= ECHO else text[:ECHO] + "…")


class VMError(ValueError):
    """A `.vm` program that cannot be read: ``str(err)`` is ``source:line: message``."""

    def __init__(self, message: str, source: str = "<string>", line: int | None = None):
        self.message = message
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


def parse(text: str, *, source: str = "<string>") -> Program:
    """Parse `.vm` text into a Program; raise :class:`VMError` on any malformed line.

    ``source`` names the text in error messages (``load`` passes the file's path).
    """
    if "\x00" in text:
        raise VMError("not a text file (contains NUL bytes)", source)
    opcodes: list[int] = []
    first: list[int] = []  # each instruction's first and second argument (-1: none)
    second: list[int] = []
    consts: list[float] = []
    params: list[list[float]] = []  # the atoms' numbers
    ids: list[str] = []
    index: dict[str, int] = {}  # ID → instruction number
    defined_on: list[int] = []  # instruction number → line number, for messages

    for lineno, line in enumerate(_lines(text.removeprefix("\ufeff")), start=1):
        fields = _FIELDS.split(line.strip(" \t\f\v"))
        if fields == [""] or fields[0].startswith("#"):
            continue

        def fail(message: str, lineno: int = lineno) -> VMError:
            return VMError(message, source, lineno)

        odd = _ODD_SPACE.search(line)
        if odd:
            raise fail(f"unexpected whitespace U+{ord(odd.group()):04X} in {_echo(line)}: "
                       "fields are separated by spaces or tabs")  # fmt: skip
        if len(fields) < 2:
            raise fail(f"expected 'ID OPCODE ARG...', got only {_echo(fields[0])}")
        name, opname, operands = fields[0], fields[1], fields[2:]
        if name in index:
            first_line = defined_on[index[name]]
            raise fail(f"duplicate ID {_echo(name)} (first defined on line {first_line})")
        code = OPCODE.get(opname)
        if code is None:
            raise fail(f"unknown opcode {_echo(opname)}")
        op = OPS[code]
        value = 0.0
        slots = [-1, -1]
        if code == CONST:
            if len(operands) != 1:
                raise fail(f"'const' takes 1 number, got {len(operands)} arguments")
            value = _parse_constant(operands[0], fail)
        elif op.params:  # an atom of a specialised program: its numbers
            if len(operands) != op.params:
                raise fail(f"{opname!r} takes {op.params} numbers, got {len(operands)}")
            numbers = [_parse_constant(token, fail) for token in operands]
            params.append(numbers + [0.0] * (PARAMS - len(numbers)))
        else:
            if len(operands) != op.arity:
                plural = "argument" if op.arity == 1 else "arguments"
                raise fail(f"{opname!r} takes {op.arity} {plural}, got {len(operands)}")
            for k, operand in enumerate(operands):
                if operand not in index:
                    raise fail(f"argument {_echo(operand)} is not defined on an earlier line")
                slots[k] = index[operand]
        index[name] = len(opcodes)
        defined_on.append(lineno)
        ids.append(name)
        opcodes.append(code)
        first.append(slots[0])
        second.append(slots[1])
        consts.append(value)

    if not opcodes:
        raise VMError("empty program: no instructions", source)
    return Program(
        opcodes=np.array(opcodes, dtype=np.int32),
        args=np.stack([np.array(first, np.int32), np.array(second, np.int32)], axis=1),
        consts=np.array(consts, dtype=np.float64),
        ids=tuple(ids),
        source=source,
        params=np.array(params, dtype=np.float64).reshape(-1, PARAMS),
    )


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text``, one at a time (a split of the whole text at once would hold
    the interpreter for a second on a 60 MB file, stalling every other thread)."""
    start = 0
    for end in _LINES.finditer(text):
        yield text[start : end.start()]
        start = end.end()
    yield text[start:]


def _parse_constant(token: str, fail: Callable[[str], VMError]) -> float:
    # ASCII decimal only: float() also takes "1_000", "٥" and full-width digits.
    if not _NUMBER.fullmatch(token):
        raise fail(f"constant {_echo(token)} is not a number")
    value = float(token)
    if not math.isfinite(value):
        raise fail(f"constant {_echo(token)} is not finite")
    return value


def load(path: str | os.PathLike[str], *, regular_only: bool = False) -> Program:
    """Read and parse a `.vm` file; raise :class:`VMError` if it is missing or malformed.

    Reads at most :data:`MAX_BYTES` (a pipe or device is read up to that, not forever).
    ``regular_only`` refuses anything but a regular file (a FIFO, a device, a socket)
    without waiting on it: the call never blocks, which is what a watcher needs.
    """
    source = os.fspath(path)
    try:
        data = _read(path, regular_only)
    except FileNotFoundError:
        raise VMError("no such file", source) from None
    except IsADirectoryError:
        raise VMError("is a directory, not a .vm file", source) from None
    except OSError as err:
        raise VMError(f"cannot read: {err.strerror or err}", source) from None
    if len(data) > MAX_BYTES:
        raise VMError(f"larger than {MAX_BYTES // 2**20} MiB, the limit for a .vm program", source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VMError(
            f"not a text file (invalid UTF-8 at byte {err.start})",
            source,
            _line_of(data, err.start),
        ) from None
    return parse(text, source=source)


def _read(path: str | os.PathLike[str], regular_only: bool) -> bytes:
    """Up to ``MAX_BYTES + 1`` bytes of ``path``; with ``regular_only``, a file that is not
    regular (checked before opening it and again on the open descriptor, which is opened
    without blocking) is refused."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    if regular_only:
        _check_regular(os.stat(path).st_mode)
        flags |= os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as file:
        if regular_only:  # replaced between the stat and the open
            _check_regular(os.fstat(fd).st_mode)
        return file.read(MAX_BYTES + 1)


def _check_regular(mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a file"
        )  # fmt: skip
        raise OSError(errno.EINVAL, f"not a regular file ({kind})")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
