"""Specialisation: a Program → a cheaper program with the same sign (the *sign program*).

Input: a Program.
Output: a Program whose value, in real arithmetic, is < 0, 0 or > 0 exactly where the
input's is (wherever the input is not NaN), with fewer and cheaper rows:

* **affine and quadric folding**: every subexpression that is an affine function of the
  inputs (``a·x + b·y + c·z + d``) becomes one ``affine`` row, every sum of up to three
  weighted squares of those plus a constant one ``quadric`` row (atoms of the op table,
  :data:`~prospero_jax.ir.ops.ATOMS`): the chains of ``mul``, ``div`` by a constant,
  ``add``, ``sub``, ``neg``, ``square`` and ``mul a a`` (or of two rows with the same
  affine form) that build them disappear into their numbers;
* **the root's sign pushed down** through ``min``, ``max``, ``neg`` and multiplication by
  a constant (De Morgan: a negated ``min`` is the ``max`` of the negated arguments, and a
  negated atom is an atom with its numbers negated), so no ``neg`` is left on the way;
* **sign-equivalent atoms** where only the sign matters: ``sqrt(q) + t`` (``q`` a quadric
  that is never negative, ``t`` a constant) becomes ``q - t²`` when ``t < 0``, ``q`` when
  ``t = 0`` and the constant ``t`` when ``t > 0``; ``sqrt(q)`` alone becomes ``q``.
* **polygons as atoms**: the ``affine`` arguments of each tree of ``max`` (``min``) rows,
  four at a time, become ``affine-max`` (``affine-min``) rows
  (:func:`~prospero_jax.ir.passes.fold_hulls`: exact), so a letter's outline is a few rows
  (prospero: 4,679 rows → 2,550).

Everything else keeps its value: an op other than ``min``/``max``/``neg`` on the way
reads its arguments' values, which are the input's (with their affine and quadric parts
folded: equal in real arithmetic). Each rewrite is a strictly increasing map of the
replaced value with 0 fixed, so the output's sign is the input's at every point; only the
rounding differs (the renderers hold the result to the float64 oracle of the input
wherever ``|value| ≥ 1e-5``). Atoms have no partial derivatives: values and derivatives are
always the input program's.

One pass backward over the tape finds in which contexts each row is needed (its value,
its sign, its negated sign), one pass forward emits them; no recursion, so tapes of
millions of rows are fine. Rows are made once (a duplicate atom or op is the row made
before), and only those the value needs: the result needs no simplification.
Chains of ``min``/``max`` (a union of many shapes), their polygons folded, are then balanced
(:func:`~prospero_jax.ir.passes.balance_extrema`: exact, depth log n) and rows made
alike by it merged, so the host tier can cull the result depth by depth. Specialising is
idempotent (atoms and ``min``/``max`` rows are kept as they are, balanced trees too), so
a sign program is drawn alike by every renderer (tests/test_specialise.py).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable

from prospero_jax.ir.ops import (
    AFFINE,
    CONST,
    INPUTS,
    OPCODE,
    OPS,
    PARAMS,
    QUADRIC,
    VAR_X,
    VAR_Y,
    VAR_Z,
)
from prospero_jax.ir.passes import balance_extrema, fold_hulls
from prospero_jax.ir.program import Program, items

# Forms: what a row is, in real arithmetic, as a function of the inputs.
#   ("lin", (a, b, c, d))                      a·x + b·y + c·z + d
#   ("quad", ((w, (a, b, c, d)), ...), k)      Σ w·(a·x + b·y + c·z + d)² + k, ≤ 3 terms
#   ("root", quad)                              sqrt of a quad that is never negative
#   None                                        anything else (its value is computed)
Lin = tuple[float, float, float, float]
Form = tuple | None

NEG, ADD, SUB, MUL, DIV = (OPCODE[n] for n in ("neg", "add", "sub", "mul", "div"))
SQUARE, SQRT, MIN, MAX = (OPCODE[n] for n in ("square", "sqrt", "min", "max"))
#: Contexts a row is needed in: its value, its sign, its negated sign (bits).
VALUE, SIGN, NEGATED = 1, 2, 4
#: Terms a quadric holds.
TERMS = 3
COMMUTATIVE = [op.commutative for op in OPS]


def _lin(form: Form) -> Lin | None:
    return form[1] if form is not None and form[0] == "lin" else None


def _same_lin(args: list[int], forms: list[Form]) -> bool:
    """Whether both operands are the same row, or rows with the same affine form."""
    a, b = args
    lin_a, lin_b = _lin(forms[a]), _lin(forms[b])
    return a == b or (lin_a is not None and lin_b is not None and _bits(*lin_a) == _bits(*lin_b))


def _constant(form: Form) -> float | None:
    lin = _lin(form)
    return lin[3] if lin is not None and lin[0] == lin[1] == lin[2] == 0 else None


def _scaled(form: Form, s: float) -> Form:
    """``s ×`` a lin or quad form; None (not a form) for ``0 ×`` one that depends on the
    inputs: ``0·x`` is -0 where x < 0, a sign no constant keeps (``recip`` tells it)."""
    if form is None or not math.isfinite(s):
        return None
    if s == 0 and (form[0] != "lin" or any(form[1][:3])):
        return None
    if form[0] == "lin":
        return ("lin", tuple(s * v for v in form[1]))
    if form[0] == "quad":
        return ("quad", tuple((s * w, lin) for w, lin in form[1]), s * form[2])
    return None


def _sum(a: Form, b: Form) -> Form:
    """``a + b`` for lin and quad forms, when it is one."""
    if a is None or b is None or a[0] == "root" or b[0] == "root":
        return None
    if a[0] == "lin" and b[0] == "lin":
        return ("lin", tuple(u + v for u, v in zip(a[1], b[1], strict=True)))
    if a[0] == "lin":
        a, b = b, a
    if b[0] == "lin":  # quad + lin: only a constant fits in a quadric
        c = _constant(b)
        return None if c is None else ("quad", a[1], a[2] + c)
    terms = a[1] + b[1]
    return ("quad", terms, a[2] + b[2]) if len(terms) <= TERMS else None


def _form(code: int, args: list[Form]) -> Form:
    """The form of a row of opcode ``code`` whose arguments have forms ``args``."""
    if code == NEG:
        return _scaled(args[0], -1.0)
    if code == ADD:
        return _sum(args[0], args[1])
    if code == SUB:
        return _sum(args[0], _scaled(args[1], -1.0))
    if code in (MUL, DIV):
        c = _constant(args[1])
        if code == MUL and c is None:
            args = args[::-1]
            c = _constant(args[1])
        if c is None or (code == DIV and c == 0):
            return None
        return _scaled(args[0], c if code == MUL else 1.0 / c)
    if code == SQUARE:
        lin = _lin(args[0])
        if lin is None:
            return None
        c = _constant(args[0])
        return ("lin", (0.0, 0.0, 0.0, c * c)) if c is not None else ("quad", ((1.0, lin),), 0.0)
    if code == SQRT:
        form = args[0]
        c = _constant(form)
        if c is not None:
            return ("lin", (0.0, 0.0, 0.0, math.sqrt(c))) if c >= 0 else None
        never_negative = form is not None and form[0] == "quad" and form[2] >= 0
        if never_negative and all(w >= 0 for w, _ in form[1]):  # type: ignore[index]
            return ("root", form)
    return None


def _sign_form(code: int, args: list[Form], form: Form) -> Form:
    """A lin or quad form with the sign of the row, if there is one (see the module
    docstring): the row's own form, or a rewrite of ``sqrt(q) + t``."""
    if form is not None:
        return form[1] if form[0] == "root" else form  # sqrt(q) has the sign of q
    if code not in (ADD, SUB):
        return None
    sides = list(args) if code == ADD else [args[0], _scaled_root(args[1])]
    for k in (0, 1):
        root, other = sides[k], sides[1 - k]
        t = _constant(other)
        if root is None or root[0] not in ("root", "-root") or t is None:
            continue
        q = root[1]
        if root[0] == "-root":  # -sqrt(q) + t = -(sqrt(q) - t)
            return _scaled(_root_plus(q, -t), -1.0)
        return _root_plus(q, t)
    return None


def _scaled_root(form: Form) -> Form:
    """``-form`` where ``form`` is a root (tagged, to be recognised by :func:`_sign_form`),
    else the negated lin or quad form."""
    if form is not None and form[0] in ("root", "-root"):
        return ("-root" if form[0] == "root" else "root", form[1])
    return _scaled(form, -1.0)


def _root_plus(q: Form, t: float) -> Form:
    """A form with the sign of ``sqrt(q) + t``."""
    assert q is not None
    if t > 0:
        return ("lin", (0.0, 0.0, 0.0, t))
    if t == 0:
        return q
    return ("quad", q[1], q[2] - t * t)


def _bits(*numbers: float) -> bytes:
    """The numbers' bit patterns: a key that tells -0.0 from 0.0 (``0.0 * -0.0`` is not
    ``0.0 * 0.0``, and ``recip`` tells them apart), where floats compare them equal."""
    return struct.pack(f"{len(numbers)}d", *numbers)


@functools.lru_cache(maxsize=16)
def specialise(program: Program) -> Program:
    """The sign program of ``program`` (module docstring): only the rows its value needs,
    each made once (a duplicate atom or op is the row made before); cached per program
    (by content)."""
    try:
        # Polygons folded into atoms before balancing (whose depths they change);
        # balancing can make two rows alike, and the second pass merges them (a fixed
        # point: specialising a sign program gives it back).
        return _specialise(balance_extrema(fold_hulls(_specialise(program))))
    except _Overflow:  # numbers beyond float64 (absurd constants): no specialisation
        return program


class _Overflow(ArithmeticError):
    """An atom's numbers are not finite."""


def _specialise(program: Program) -> Program:
    n = len(program)
    opcodes = list(items(program.opcodes))
    arity = [op.arity for op in OPS]
    args = [row[: arity[code]] for row, code in zip(items(program.args), opcodes, strict=True)]
    consts = list(items(program.consts))
    units = {code: ("lin", tuple(float(k == j) for j in range(4))) for k, code in enumerate(INPUTS)}
    forms: list[Form] = []
    for i, code in enumerate(opcodes):
        if code in units:
            forms.append(units[code])
        elif code == CONST:
            forms.append(("lin", (0.0, 0.0, 0.0, consts[i])))
        elif arity[code] == 0:  # already an atom: kept as it is
            forms.append(None)
        elif code == MUL and _same_lin(args[i], forms):  # a·a is a square
            forms.append(_form(SQUARE, [forms[args[i][0]]]))
        else:
            forms.append(_form(code, [forms[a] for a in args[i]]))

    # Backward: in which contexts each row is needed (its users come after it).
    need = [0] * n
    need[-1] = SIGN
    signs: list[Form] = [None] * n  # a row's sign form, where it has one
    for i in range(n - 1, -1, -1):
        code, wanted = opcodes[i], need[i]
        if wanted & (SIGN | NEGATED):
            operands = [forms[a] for a in args[i]]
            sign = _sign_form(code, operands, forms[i]) if code != NEG else None
            if sign is not None:
                signs[i] = sign
            else:
                for context in (SIGN, NEGATED):
                    if wanted & context:
                        _pass_sign(code, args[i], operands, context, need, i)
        if need[i] & VALUE and forms[i] is None:
            for a in args[i]:
                need[a] |= VALUE
    return _emit(program, opcodes, args, forms, signs, need)


def _pass_sign(
    code: int, args: list[int], operands: list[Form], context: int, need: list[int], i: int
) -> None:
    """Mark what a row's sign (``context``) needs of its arguments, or of its own value."""
    flip = NEGATED if context == SIGN else SIGN
    scale = _sign_scale(code, operands) if code in (MUL, DIV) else None
    if code == NEG:
        need[args[0]] |= flip
    elif code in (MIN, MAX):
        for a in args:
            need[a] |= context
    elif scale is not None:
        need[args[scale[1]]] |= context if scale[0] > 0 else flip
    else:
        need[i] |= VALUE


def _sign_scale(code: int, args: list[Form]) -> tuple[float, int] | None:
    """``(c, k)`` if the row is its argument ``k`` times (or over) a nonzero constant ``c``."""
    for k in (0, 1):
        c = _constant(args[1 - k])
        if c is not None and c != 0 and math.isfinite(c) and (code == MUL or k == 0):
            return c, k
    return None


def _emit(
    program: Program,
    opcodes: list[int],
    args: list[list[int]],
    forms: list[Form],
    signs: list[Form],
    need: list[int],
) -> Program:
    """Forward: the rows each needed context of each row stands for."""
    ops: list[int] = []
    operands: list[tuple[int, int]] = []
    consts: list[float] = []
    params: list[tuple[float, ...]] = []
    atoms = iter(program.params)
    out: dict[tuple[int, int], int] = {}
    made: dict[tuple[object, ...], int] = {}  # a row's key → its index: no duplicates

    def row(code: int, a: int = -1, b: int = -1, c: float = 0.0, p: tuple = ()) -> int:
        if p and not all(map(math.isfinite, p)):
            raise _Overflow
        if COMMUTATIVE[code] and a > b:
            a, b = b, a
        key = (code, a, b, _bits(c, *p))  # bit for bit: -0.0 is not 0.0 (recip(-0) < 0)
        index = made.get(key)
        if index is None:
            index = made[key] = len(ops)
            ops.append(code)
            operands.append((a, b))
            consts.append(c)
            if p:
                params.append(p)
        return index

    def atom(form: Form) -> int:
        """The row computing a lin or quad form."""
        assert form is not None
        if form[0] == "lin":
            a, b, c, d = form[1]
            if a == b == c == 0:
                return row(CONST, c=d)
            for k, unit in enumerate(((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0))):
                if form[1] == unit:
                    return row((VAR_X, VAR_Y, VAR_Z)[k])
            return row(AFFINE, p=(a, b, c, d) + (0.0,) * (PARAMS - 4))
        numbers: tuple[float, ...] = ()
        for w, lin in form[1]:
            numbers += (w, *lin)
        numbers += (0.0,) * (PARAMS - 1 - len(numbers))
        return row(QUADRIC, p=(*numbers, form[2]))

    for i, code in enumerate(opcodes):
        own = next(atoms) if OPS[code].params else None
        wanted = need[i]
        if wanted & VALUE:
            form = forms[i]
            if own is not None:
                out[(i, VALUE)] = row(code, p=tuple(own))
            elif form is None:
                a, b = ([out[(k, VALUE)] for k in args[i]] + [-1, -1])[:2]
                out[(i, VALUE)] = row(code, a, b, float(program.consts[i]))
            elif form[0] == "root":
                out[(i, VALUE)] = row(SQRT, atom(form[1]))
            else:
                out[(i, VALUE)] = atom(form)
        for context in (SIGN, NEGATED):
            if wanted & context:
                out[(i, context)] = _sign_row(
                    i, code, context, args[i], forms, signs, out, row, atom
                )
    value = out[(len(opcodes) - 1, SIGN)]
    if value != len(ops) - 1:  # the value must be the last row: max(v, v) is v
        ops.append(MAX)
        operands.append((value, value))
        consts.append(0.0)
    return Program.from_rows(ops, operands, consts, program.source, params)


def _sign_row(
    i: int,
    code: int,
    context: int,
    args: list[int],
    forms: list[Form],
    signs: list[Form],
    out: dict[tuple[int, int], int],
    row: Callable[..., int],
    atom: Callable[[Form], int],
) -> int:
    """The row standing for row ``i``'s sign (``context``), as :func:`_pass_sign` planned."""
    negated = context == NEGATED
    flip = NEGATED if context == SIGN else SIGN
    if signs[i] is not None:
        return atom(_scaled(signs[i], -1.0) if negated else signs[i])
    if code == NEG:
        return out[(args[0], flip)]
    if code in (MIN, MAX):
        swapped = {MIN: MAX, MAX: MIN}[code] if negated else code
        return int(row(swapped, out[(args[0], context)], out[(args[1], context)]))
    scale = _sign_scale(code, [forms[a] for a in args]) if code in (MUL, DIV) else None
    if scale is not None:
        return out[(args[scale[1]], context if scale[0] > 0 else flip)]
    value = out[(i, VALUE)]
    return int(row(NEG, value)) if negated else value
