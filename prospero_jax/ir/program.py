"""The IR: an immutable straight-line tape of instructions held in NumPy arrays.

Input: arrays built by the parser, a pass or the shape builder.
Output: a :class:`Program`, the value every later stage takes.

Invariants, checked on construction:

* ``opcodes[i]`` is a valid index into :data:`prospero_jax.ir.ops.OPS`;
* ``args[i, k]`` is the index of an *earlier* instruction for ``k < arity``, and ``-1`` for
  unused slots (SSA order: the tape is topologically sorted);
* ``consts[i]`` is a finite float64 for ``const`` instructions and ``0.0`` elsewhere;
* ``ids[i]`` is the instruction's name (``_1f`` in prospero); names are unique;
* ``params`` holds the numbers of the *atom* rows (``affine``, ``quadric``, ...: rows of a
  specialised program, see :mod:`prospero_jax.ir.specialise`), one row of
  :data:`~prospero_jax.ir.ops.PARAMS` finite numbers per atom, in tape order (unused
  trailing numbers 0); a program without atoms has none;
* the program's value is the last instruction's; the tape is non-empty.

All arrays are read-only, so a Program can be shared and hashed by content.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Float64, Int32

from prospero_jax.ir.ops import ATOMS, CONST, OPS, PARAMS, VAR_Z


def items(array: np.ndarray, chunk: int = 1 << 15) -> Iterator[Any]:
    """``array.tolist()``'s items, converted a chunk at a time. One ``tolist`` of millions
    of rows holds the interpreter for a second or more, stalling every other thread (a
    server answering requests while a large program is read)."""
    for start in range(0, len(array), chunk):
        yield from array[start : start + chunk].tolist()


_NO_PARAMS = np.zeros((0, PARAMS))


def refuse_atoms(program: Program, evaluator: str) -> None:
    """Raise ValueError if ``program`` has atoms (it is a sign program, from
    :func:`~prospero_jax.ir.specialise.specialise`), which ``evaluator`` cannot run."""
    if len(program.params):
        raise ValueError(
            f"{program.source} is a specialised program (atom rows): {evaluator} "
            "needs the program as written; use the original program"
        )


@dataclass(frozen=True, eq=False)
class Program:
    """A `.vm` program as an immutable SSA tape (see the module docstring for invariants)."""

    opcodes: Int32[np.ndarray, " n"]
    args: Int32[np.ndarray, "n 2"]
    consts: Float64[np.ndarray, " n"]
    ids: tuple[str, ...]
    source: str = "<program>"
    params: Float64[np.ndarray, "atoms params"] = field(default_factory=lambda: _NO_PARAMS)
    _digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        opcodes = np.array(self.opcodes, dtype=np.int32)
        args = np.array(self.args, dtype=np.int32).reshape(-1, 2)
        consts = np.array(self.consts, dtype=np.float64)
        n = len(opcodes)
        if n == 0:
            raise ValueError("a program needs at least one instruction")
        if args.shape != (n, 2) or consts.shape != (n,) or len(self.ids) != n:
            raise ValueError("opcodes, args, consts and ids must have one row per instruction")
        if opcodes.min() < 0 or opcodes.max() >= len(OPS):
            raise ValueError("opcode out of range")
        arity = np.array([op.arity for op in OPS], dtype=np.int32)[opcodes]
        used = np.arange(2)[None, :] < arity[:, None]
        index = np.arange(n, dtype=np.int32)[:, None]
        if np.any(used & ((args < 0) | (args >= index))) or np.any(~used & (args != -1)):
            raise ValueError("every argument must name an earlier instruction")
        is_const = opcodes == CONST
        if not np.all(np.isfinite(consts[is_const])) or np.any(consts[~is_const] != 0):
            raise ValueError("constants must be finite, and 0.0 outside const rows")
        atoms = int(np.isin(opcodes, ATOMS).sum())
        params = np.array(self.params, dtype=np.float64).reshape(-1, PARAMS)
        if len(params) != atoms or not np.all(np.isfinite(params)):
            raise ValueError("params must hold finite numbers for each atom row, in order")
        for a in (opcodes, args, consts, params):
            a.flags.writeable = False
        object.__setattr__(self, "opcodes", opcodes)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "consts", consts)
        object.__setattr__(self, "ids", tuple(self.ids))
        object.__setattr__(self, "params", params)
        h = hashlib.sha256()
        for a in (opcodes, args, consts) + ((params,) if atoms else ()):
            h.update(a.tobytes())
        object.__setattr__(self, "_digest", h.hexdigest())

    # Identity by content: two programs with the same tape are interchangeable, whatever
    # their names or source, so compiled functions can be cached per program.
    @classmethod
    def from_rows(
        cls,
        ops: list[int],
        args: list[Any],
        consts: list[float],
        source: str,
        params: list[Any] | None = None,
    ) -> Program:
        """A program built row by row by a pass: its opcodes, operand pairs, constants
        and atoms' numbers (in tape order) as lists; IDs are the rows' hex indices."""
        n = len(ops)
        return cls(
            np.array(ops, np.int32),
            np.array(args, np.int32).reshape(n, 2),
            np.array(consts, np.float64),
            tuple(f"_{i:x}" for i in range(n)),
            source,
            np.array(params or [], np.float64).reshape(-1, PARAMS),
        )

    def __hash__(self) -> int:
        return hash(self._digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and self._digest == other._digest

    def __len__(self) -> int:
        return len(self.opcodes)

    @property
    def digest(self) -> str:
        """SHA-256 of the tape's arrays (not of names or source)."""
        return self._digest

    @property
    def constants(self) -> Float64[np.ndarray, " constants"]:
        """The values of the ``const`` instructions, in tape order (a new array)."""
        return np.array(self.consts[self.opcodes == CONST])

    @property
    def constant_ids(self) -> tuple[str, ...]:
        """The ids of the ``const`` instructions, in tape order (as :attr:`constants`)."""
        return tuple(name for name, op in zip(self.ids, self.opcodes, strict=True) if op == CONST)

    def with_constants(self, values: Float64[np.ndarray, " constants"]) -> Program:
        """This program with its ``const`` instructions set to ``values`` (tape order).

        Names and source are kept, so ``p.with_constants(c).to_vm()`` is the `.vm` text of
        the new program; ``p.with_constants(p.constants) == p``.
        """
        values = np.asarray(values, dtype=np.float64)
        is_const = self.opcodes == CONST
        expected = int(is_const.sum())
        if values.shape != (expected,):
            raise ValueError(f"expected {expected} constants, got an array of shape {values.shape}")
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values))
            raise ValueError(f"constants must be finite: {values[bad[0]]} at position {bad[0]}")
        consts = self.consts.copy()
        consts[is_const] = values
        return Program(self.opcodes, self.args, consts, self.ids, self.source, self.params)

    @property
    def uses_z(self) -> bool:
        """Whether the program reads ``var-z`` (a 3D model)."""
        return bool(np.any(self.opcodes == VAR_Z))

    def histogram(self) -> dict[str, int]:
        """Instruction count per opcode name, most frequent first."""
        counts = Counter(OPS[c].name for c in items(self.opcodes))
        return dict(counts.most_common())

    def to_bytes(self) -> bytes:
        """The program as bytes (NumPy's ``.npz``, no pickles): ``from_bytes`` reads it."""
        out = io.BytesIO()
        np.savez(
            out, opcodes=self.opcodes, args=self.args, consts=self.consts, params=self.params,
            ids=np.array("\n".join(self.ids)), source=np.array(self.source),
        )  # fmt: skip
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        """The program :meth:`to_bytes` wrote (checked like any other: ValueError, or an
        error of NumPy's reader, if the bytes are not one)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            ids = tuple(str(f["ids"]).split("\n"))
            return cls(f["opcodes"], f["args"], f["consts"], ids, str(f["source"]), f["params"])

    def to_vm(self, comment: str | None = None) -> str:
        """The program as `.vm` text; ``parse(p.to_vm()) == p``."""
        lines = [f"# {line}" for line in comment.splitlines()] if comment else []
        ids = self.ids
        atoms = iter(items(self.params))
        for i, (code, (a, b), c) in enumerate(
            zip(items(self.opcodes), items(self.args), items(self.consts), strict=True)
        ):
            op = OPS[code]
            if code == CONST:
                lines.append(f"{ids[i]} const {c!r}")
            elif op.params:
                numbers = next(atoms)[: op.params]
                lines.append(" ".join([ids[i], op.name, *(repr(float(v)) for v in numbers)]))
            else:
                operands = [ids[a], ids[b]][: op.arity]
                lines.append(" ".join([ids[i], op.name, *operands]))
        return "\n".join(lines) + "\n"
