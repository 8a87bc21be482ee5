"""Stage 1, parse: `.vm` text → :class:`~prospero_jax._tape.Program`.

Input: text in the Prospero `.vm` format (one ``ID OPCODE ARG...`` per line; blank lines
and lines starting with ``#`` are comments), or a path to such a file.
Output: a Program whose instructions are the file's, in order, with the file's IDs.

Invariant: any input that is not a well-formed program raises :class:`VMError` naming the
source, the 1-based line and what is wrong; nothing else escapes (no ``KeyError``,
``UnicodeDecodeError`` or ``ValueError`` from deep inside).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from prospero_jax._ops import CONST, OPCODE, OPS
from prospero_jax._tape import Program


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
    args: list[tuple[int, int]] = []
    consts: list[float] = []
    ids: list[str] = []
    index: dict[str, int] = {}  # ID → instruction number
    defined_on: dict[str, int] = {}  # ID → line number, for duplicate-ID messages

    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue

        def fail(message: str, lineno: int = lineno) -> VMError:
            return VMError(message, source, lineno)

        if len(fields) < 2:
            raise fail(f"expected 'ID OPCODE ARG...', got only {fields[0]!r}")
        name, opname, operands = fields[0], fields[1], fields[2:]
        if name in defined_on:
            raise fail(f"duplicate ID {name!r} (first defined on line {defined_on[name]})")
        code = OPCODE.get(opname)
        if code is None:
            raise fail(f"unknown opcode {opname!r}")
        op = OPS[code]
        value = 0.0
        slots = [-1, -1]
        if code == CONST:
            if len(operands) != 1:
                raise fail(f"'const' takes 1 number, got {len(operands)} arguments")
            value = _parse_constant(operands[0], fail)
        else:
            if len(operands) != op.arity:
                plural = "argument" if op.arity == 1 else "arguments"
                raise fail(f"{opname!r} takes {op.arity} {plural}, got {len(operands)}")
            for k, operand in enumerate(operands):
                if operand not in index:
                    raise fail(f"argument {operand!r} is not defined on an earlier line")
                slots[k] = index[operand]
        index[name] = len(opcodes)
        defined_on[name] = lineno
        ids.append(name)
        opcodes.append(code)
        args.append((slots[0], slots[1]))
        consts.append(value)

    if not opcodes:
        raise VMError("empty program: no instructions", source)
    return Program(
        opcodes=np.array(opcodes, dtype=np.int32),
        args=np.array(args, dtype=np.int32),
        consts=np.array(consts, dtype=np.float64),
        ids=tuple(ids),
        source=source,
    )


def _parse_constant(token: str, fail: Callable[[str], VMError]) -> float:
    try:
        value = float(token.replace("_", "!"))  # float() accepts 1_000; the format does not
    except ValueError:
        raise fail(f"constant {token!r} is not a number") from None
    if not math.isfinite(value):
        raise fail(f"constant {token!r} is not finite")
    return value


def load(path: str | os.PathLike[str]) -> Program:
    """Read and parse a `.vm` file; raise :class:`VMError` if it is missing or malformed."""
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise VMError("no such file", source) from None
    except IsADirectoryError:
        raise VMError("is a directory, not a .vm file", source) from None
    except OSError as err:
        raise VMError(f"cannot read: {err.strerror or err}", source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VMError(
            f"not a text file (invalid UTF-8 at byte {err.start})",
            source,
            _line_of(data, err.start),
        ) from None
    return parse(text, source=source)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
