"""The op table: every `.vm` opcode described once.

Input: nothing (this module is data).
Output: ``OPS``, a tuple of :class:`Op` indexed by opcode number, and ``OPCODE``, the map
from an opcode's name to its number.

Each op's value rule is written once, generic over an array namespace ``xp`` (``numpy``
or ``jax.numpy``): called with NumPy on float64 it is the oracle's reference semantics,
called with ``jax.numpy`` it is the lowering that JAX traces (and differentiates).
Invariants:

* opcode numbers are positions in ``OPS`` and never change meaning within a process;
* an op of arity 0 is an input (``var-x``/``var-y``/``var-z``) or ``const``; its ``rule`` is
  ``None`` and evaluators supply its value;
* every rule preserves the floating dtype of its arguments and is total: out-of-domain
  inputs give NaN (or ±inf) as IEEE 754 says, never an exception.

Semantics follow ``../shared/README.md``: ``round`` is half away from zero, ``mod`` is the
Euclidean remainder in ``[0, |b|)``, ``compare`` is -1/0/1 (NaN if either side is NaN),
``and``/``or``/``not`` treat 0 as false, and ``min``/``max`` propagate NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# An array namespace (numpy or jax.numpy) and an array of it; kept loose on purpose so
# that one rule serves both.
Namespace = Any
Array = Any
Rule = Callable[..., Array]


@dataclass(frozen=True)
class Op:
    """One opcode: its `.vm` name, its number of value arguments and its value rule."""

    name: str
    arity: int
    rule: Rule | None
    commutative: bool = False


def _round(xp: Namespace, a: Array) -> Array:
    # Half away from zero, exactly: a - trunc(a) is exact in floating point, unlike
    # floor(a + 0.5), which rounds 0.49999999999999994 up.
    t = xp.trunc(a)
    return xp.where(xp.abs(a - t) >= 0.5, t + xp.sign(a), t)


def _mod(xp: Namespace, a: Array, b: Array) -> Array:
    # Euclidean remainder: fmod is exact, and a negative remainder moves up by |b|.
    m = xp.abs(b)
    r = xp.fmod(a, m)
    return xp.where(r < 0, r + m, r)


def _compare(xp: Namespace, a: Array, b: Array) -> Array:
    t = xp.result_type(a, b)
    sign = (a > b).astype(t) - (a < b).astype(t)
    return xp.where(xp.isnan(a) | xp.isnan(b), xp.nan, sign)


def _not(xp: Namespace, a: Array) -> Array:
    return (a == 0).astype(xp.result_type(a))


def _and(xp: Namespace, a: Array, b: Array) -> Array:
    return xp.where(a == 0, a, b)


def _or(xp: Namespace, a: Array, b: Array) -> Array:
    return xp.where(a != 0, a, b)


def _unary(fn: str) -> Rule:
    def rule(xp: Namespace, a: Array) -> Array:
        return getattr(xp, fn)(a)

    rule.__name__ = fn
    return rule


def _binary(fn: str) -> Rule:
    def rule(xp: Namespace, a: Array, b: Array) -> Array:
        return getattr(xp, fn)(a, b)

    rule.__name__ = fn
    return rule


OPS: tuple[Op, ...] = (
    # Inputs and constants: evaluators supply their values.
    Op("var-x", 0, None),
    Op("var-y", 0, None),
    Op("var-z", 0, None),
    Op("const", 0, None),
    # Unary.
    Op("neg", 1, _unary("negative")),
    Op("abs", 1, _unary("abs")),
    Op("square", 1, _unary("square")),
    Op("sqrt", 1, _unary("sqrt")),
    Op("recip", 1, _unary("reciprocal")),
    Op("floor", 1, _unary("floor")),
    Op("ceil", 1, _unary("ceil")),
    Op("round", 1, _round),
    Op("sin", 1, _unary("sin")),
    Op("cos", 1, _unary("cos")),
    Op("tan", 1, _unary("tan")),
    Op("asin", 1, _unary("arcsin")),
    Op("acos", 1, _unary("arccos")),
    Op("atan", 1, _unary("arctan")),
    Op("exp", 1, _unary("exp")),
    Op("ln", 1, _unary("log")),
    Op("not", 1, _not),
    # Binary.
    Op("add", 2, _binary("add"), commutative=True),
    Op("sub", 2, _binary("subtract")),
    Op("mul", 2, _binary("multiply"), commutative=True),
    Op("div", 2, _binary("divide")),
    Op("min", 2, _binary("minimum"), commutative=True),
    Op("max", 2, _binary("maximum"), commutative=True),
    Op("atan2", 2, _binary("arctan2")),
    Op("mod", 2, _mod),
    Op("compare", 2, _compare),
    Op("and", 2, _and),
    Op("or", 2, _or),
)

OPCODE: dict[str, int] = {op.name: code for code, op in enumerate(OPS)}

VAR_X, VAR_Y, VAR_Z, CONST = (OPCODE[n] for n in ("var-x", "var-y", "var-z", "const"))
INPUTS: tuple[int, ...] = (VAR_X, VAR_Y, VAR_Z)
