"""The op table: every `.vm` opcode described once.

Input: nothing (this module is data).
Output: ``OPS``, a tuple of :class:`Op` indexed by opcode number, and ``OPCODE``, the map
from an opcode's name to its number.

Each op is described once, by rules written generic over an array namespace ``xp``
(``numpy`` or ``jax.numpy``):

* ``rule(xp, a, b)``, its value: called with NumPy on float64 it is the oracle's reference
  semantics, called with ``jax.numpy`` it is the lowering that JAX traces, differentiates,
  and runs inside the tape interpreter;
* ``interval(xp, (alo, ahi), (blo, bhi))``, an interval ``(lo, hi)`` that contains the
  op's value at every point whose arguments lie in the argument intervals. A NaN bound
  means "may be NaN": rules return NaN bounds where the op can produce NaN on the box,
  and evaluators poison an op whose arguments may be NaN (see :func:`interval_step`);
* ``choose(xp, a, b)``, for ``min`` and ``max`` only: 1 where the argument intervals
  prove the result is always ``a``, 2 where always ``b``, else 0 (the tape pruner
  replaces the op by the chosen argument);
* ``sign_pass``: how a sign test on the op's value passes to its arguments: ``"same"``
  (``min``: < 0 iff either is, > 0 iff both are; ``max``: < 0 iff both are, > 0 iff
  either is; given no NaN), ``"flip"`` (``neg``: < 0 iff its argument is > 0, NaN
  included), or ``None`` (the value is needed);
* ``sign_choose(xp, a, b, positive)``, for ``"same"`` ops: 1 where the intervals prove
  the op passes the test (< 0, or > 0 if ``positive``) exactly where ``a`` does, 2 where
  exactly where ``b`` does, else 0. The pruner uses these where only a sign is needed.
* ``partials(xp, out, a, b)``, its partial derivatives ``(∂out/∂a, ∂out/∂b)`` (one per
  argument; ``out`` is the op's value): forward mode computes ``∂a · da + ∂b · db``,
  reverse mode ``ct_a += ∂a · ct``. Where a derivative does not exist the rules pick a
  finite one (see "Derivative conventions" below), and each partial is computed so that
  it is finite wherever the textbook derivative is (no ``where`` over an infinite branch,
  which would turn reverse-mode cotangents into NaN);
* ``linear``: when those partials are constants whatever the (finite) argument values
  (``"always"``, ``"scaled"`` by an immediate, ``"equal"`` operands, or ``""``): a tape of
  such rows has one gradient everywhere, which heightmap normals evaluate once.

Interval bounds are computed in the working dtype with the same round-to-nearest
operations as point values, so monotone, correctly rounded ops (everything except the
transcendental functions) give bounds that hold exactly; the transcendental ones are
widened by about 8 float32 ulps and the smallest normal number on each side, which covers
libm results that differ by a few ulps between code paths (XLA's vectorized and scalar
``atan`` differ by 2) and XLA:CPU's flushing of subnormals. Invariants:

* opcode numbers are positions in ``OPS`` and never change meaning within a process;
* an op of arity 0 is an input (``var-x``/``var-y``/``var-z``), ``const`` or an *atom*
  (``affine``, ``quadric``, ``affine-max``, ``affine-min``: rows of a specialised program
  that carry ``params`` numbers and compute from the inputs by their ``source`` rule,
  ``source(xp, p, x, y, z)``, and ``source_interval(xp, p, x, y, z)`` on intervals; its
  affine forms' coefficients start at its numbers' ``forms`` offsets, which a change of
  inputs transforms); its ``rule`` is ``None``, and evaluators supply inputs' and
  constants' values;
* every rule preserves the floating dtype of its arguments and is total: out-of-domain
  inputs give NaN (or ±inf) as IEEE 754 says, never an exception.

Derivative conventions, where the derivative does not exist: ``min``/``max`` at a tie
take the mean of the two sides' derivatives (JAX's choice); ``sqrt`` at 0, ``asin``/
``acos`` at ±1 and ``atan2`` at (0, 0), whose derivatives are infinite or undefined, take
0; ``abs`` at 0 takes 0; piecewise-constant ops (``floor``, ``ceil``, ``round``,
``compare``, ``not``) have derivative 0; ``and``/``or`` follow the argument they return;
``mod`` is ``a - q |b|`` with the quotient ``q`` held constant. Elsewhere a rule is the
textbook derivative, NaN and infinities included (``recip`` at 0 gives ±inf · da). The
dual step that applies these rules (:func:`prospero_jax.evaluators.unroll.dual_step`)
keeps derivatives finite wherever values are: a non-finite value carries no derivative,
a zero partial selects nothing, and a NaN partial of a finite value counts as 0.

Semantics follow ``../shared/README.md``: ``round`` is half away from zero, ``mod`` is the
Euclidean remainder in ``[0, |b|)``, ``compare`` is -1/0/1 (NaN if either side is NaN),
``and``/``or``/``not`` treat 0 as false, and ``min``/``max`` propagate NaN and order -0
below +0 (IEEE 754-2019, as XLA does; NumPy's own ``minimum`` does not, so the oracle's
rule says so explicitly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# An array namespace (numpy or jax.numpy) and an array of it; kept loose on purpose so
# that one rule serves both.
Namespace = Any
Array = Any
Rule = Callable[..., Array]


Bounds = tuple[Array, Array]
IntervalRule = Callable[..., Bounds]
#: ``partials(xp, out, a, b)``: the op's partial derivatives, one per argument.
PartialsRule = Callable[..., tuple[Array, ...]]


@dataclass(frozen=True)
class Op:
    """One opcode: its `.vm` name, its arity and its value, interval and choice rules."""

    name: str
    arity: int
    rule: Rule | None
    interval: IntervalRule | None = None
    commutative: bool = False
    choose: Rule | None = None
    sign_pass: str | None = None
    sign_choose: Rule | None = None
    partials: PartialsRule | None = None
    params: int = 0
    source: Rule | None = None
    source_interval: IntervalRule | None = None
    forms: tuple[int, ...] = ()
    #: Its value is a product: in a fused loop XLA:CPU contracts it and a sum that uses
    #: it into one fused multiply-add, rounding once where an interpreter rounds twice, so
    #: fused closures keep it apart (:func:`~prospero_jax.evaluators.unroll.run`'s zero).
    product: bool = False
    #: When its partial derivatives are constants, whatever its arguments' values (where
    #: they are finite): ``"always"``; ``"scaled"`` where an operand is an immediate (of
    #: ``mul`` either, of ``div`` the divisor); ``"equal"`` where both operands are one
    #: row (``min``, ``max``: one half each); ``""`` never. A tape of such rows has the
    #: same gradient at every point (:func:`~prospero_jax.renderers.gradients.
    #: constant_gradients`).
    linear: str = ""


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


def _extremum(fn: str) -> Rule:
    """``minimum`` or ``maximum``, with -0 < +0 as IEEE 754-2019 (and XLA) order them.

    NumPy returns its second argument when +0 meets -0 (the x86 instruction's choice), so
    for NumPy the zero's sign is set explicitly; ``jax.numpy`` already orders them.
    """
    negative = fn == "minimum"

    def rule(xp: Namespace, a: Array, b: Array) -> Array:
        out = getattr(xp, fn)(a, b)
        if xp is np:
            zeros = (a == 0) & (b == 0)
            pick_a = np.signbit(a) == negative  # min takes the -0, max the +0
            out = np.where(zeros, np.where(pick_a, a, b), out)
        return out

    rule.__name__ = fn
    return rule


def _and(xp: Namespace, a: Array, b: Array) -> Array:
    return xp.where(a == 0, a, b)


def _or(xp: Namespace, a: Array, b: Array) -> Array:
    return xp.where(a != 0, a, b)


def _atan2(xp: Namespace, a: Array, b: Array) -> Array:
    """``atan2(a, b)``, its four signed-zero cases (±0 or ±π, as IEEE 754 and the oracle
    say) chosen explicitly: XLA:CPU computes them right at run time, but where LLVM folds
    both arguments to constant zeros (``atan2(0, and(0, z))``) it gave NaN."""
    zeros = (a == 0) & (b == 0)
    turned = xp.where(xp.signbit(b), xp.asarray(math.pi, a.dtype), xp.zeros_like(a))
    return xp.where(zeros, xp.where(xp.signbit(a), -turned, turned), xp.arctan2(a, b))


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


# Interval rules. Arguments are (lo, hi) pairs with lo <= hi and no NaN (the evaluator
# poisons NaN arguments before calling a rule).


def _widen(xp: Namespace, lo: Array, hi: Array) -> Bounds:
    # About 8 ulps in float32 (libm results differ by a few ulps between XLA's scalar and
    # vector code paths), plus the smallest normal number: XLA:CPU flushes subnormal
    # arithmetic to zero but its libm functions return subnormals. Infinities stay.
    def out(v: Array, direction: float) -> Array:
        margin = xp.abs(v) * 2.0**-20 + xp.finfo(v.dtype).tiny
        return xp.where(xp.isinf(v), v, v + direction * margin)

    return out(lo, -1.0), out(hi, 1.0)


def _nan_where(xp: Namespace, bad: Array, lo: Array, hi: Array) -> Bounds:
    return xp.where(bad, xp.nan, lo), xp.where(bad, xp.nan, hi)


def _everything_where(xp: Namespace, wide: Array, lo: Array, hi: Array) -> Bounds:
    """``[-inf, inf]`` where ``wide``: any value, infinities included, but not NaN (a NaN
    bound would make every row that reads it unknown, a ``max`` with a positive side
    included)."""
    return xp.where(wide, -xp.inf, lo), xp.where(wide, xp.inf, hi)


def _monotone(fn: str, exact: bool = True) -> IntervalRule:
    """For non-decreasing functions: (f(lo), f(hi))."""

    def interval(xp: Namespace, a: Bounds) -> Bounds:
        f = getattr(xp, fn)
        lo, hi = f(a[0]), f(a[1])
        return (lo, hi) if exact else _widen(xp, lo, hi)

    return interval


def _exp(xp: Namespace, a: Array) -> Array:
    """``exp(a)``, a NaN passed through by a select: XLA:CPU computed ``exp`` of a NaN it
    knew when compiling (a constant subexpression, ``exp(ln(-1))``, in a fused loop that
    reads no input) as whatever its registers held (LLVM folds the approximation's
    integer conversion of NaN, which is undefined), so a program of a constant NaN,
    never inside, drew pixels."""
    return xp.where(xp.isnan(a), a, xp.exp(a))


def _i_exp(xp: Namespace, a: Bounds) -> Bounds:
    # Widened as libm results are, but never below 0: exp is never negative, and a lower
    # bound below 0 where exp underflows would make a blend's ``ln(exp(u) + exp(v))``
    # unknown (NaN) wherever both sides underflow: the bear's whole far field.
    lo, hi = _widen(xp, _exp(xp, a[0]), _exp(xp, a[1]))
    return xp.maximum(lo, 0), hi


def _i_round(xp: Namespace, a: Bounds) -> Bounds:
    return _round(xp, a[0]), _round(xp, a[1])


def _i_neg(xp: Namespace, a: Bounds) -> Bounds:
    return -a[1], -a[0]


def _i_abs(xp: Namespace, a: Bounds) -> Bounds:
    lo, hi = a
    low = xp.where(lo >= 0, lo, xp.where(hi <= 0, -hi, xp.zeros_like(lo)))
    return low, xp.maximum(xp.abs(lo), xp.abs(hi))


def _i_square(xp: Namespace, a: Bounds) -> Bounds:
    lo, hi = a
    low = xp.where(lo >= 0, lo * lo, xp.where(hi <= 0, hi * hi, xp.zeros_like(lo)))
    return low, xp.maximum(lo * lo, hi * hi)


def _i_sqrt(xp: Namespace, a: Bounds) -> Bounds:
    return _nan_where(xp, a[0] < 0, xp.sqrt(xp.maximum(a[0], 0)), xp.sqrt(a[1]))


def _i_ln(xp: Namespace, a: Bounds) -> Bounds:
    lo, hi = _widen(xp, xp.log(xp.maximum(a[0], 0)), xp.log(a[1]))
    return _nan_where(xp, a[0] < 0, lo, hi)


def _i_arc(fn: str, increasing: bool) -> IntervalRule:
    def interval(xp: Namespace, a: Bounds) -> Bounds:
        f = getattr(xp, fn)
        lo, hi = (f(a[0]), f(a[1])) if increasing else (f(a[1]), f(a[0]))
        lo, hi = _widen(xp, lo, hi)
        return _nan_where(xp, (a[0] < -1) | (a[1] > 1), lo, hi)

    return interval


def _tan(xp: Namespace, a: Array) -> Array:
    """``sin(a) / cos(a)``: XLA:CPU lowers ``tan`` to that inside a loop's branches (the
    leaf kernel's) and to its own approximation in a fused loop (the unrolled closure's),
    1 ulp apart at a quarter of points; spelled out, every evaluator computes it alike
    (culled == brute force; tests/test_ops.py)."""
    return xp.sin(a) / xp.cos(a)


def _i_tan(xp: Namespace, a: Bounds) -> Bounds:
    """All reals (its poles are everywhere a box may be); NaN at infinite arguments."""
    lo, hi = xp.full_like(a[0], -xp.inf), xp.full_like(a[0], xp.inf)
    return _nan_where(xp, _infinite(xp, a), lo, hi)


#: Arguments of sin and cos beyond this magnitude get [-1, 1]: above it a float32's
#: spacing (2⁻⁷ at 2¹⁶) is too coarse to place the extrema between the bounds.
PERIODIC_REACH = 2.0**16


def _i_wave(fn: str, peak: float) -> IntervalRule:
    """sin (``peak`` π/2) and cos (``peak`` 0): the values at the bounds, and ±1 where a
    crest (``peak + 2kπ``) or a trough (``peak + π + 2kπ``) may lie between them. The
    crests are searched from slightly below ``lo`` to slightly above ``hi`` (a margin far
    above the rounding of ``(lo - peak) / 2π``), so a rounding can only add a ±1, never
    lose one. NaN at infinite arguments, as the value is."""

    def interval(xp: Namespace, a: Bounds) -> Bounds:
        f = getattr(xp, fn)
        fa, fb = f(a[0]), f(a[1])
        lo, hi = _widen(xp, xp.minimum(fa, fb), xp.maximum(fa, fb))
        one = _widen(xp, xp.full_like(a[0], -1.0), xp.full_like(a[0], 1.0))
        reach = xp.maximum(xp.abs(a[0]), xp.abs(a[1]))
        margin = reach * 2.0**-16 + 2.0**-16
        start, stop = a[0] - margin, a[1] + margin
        tau = 2.0 * math.pi

        def reaches(at: float) -> Array:
            first = xp.ceil((start - at) / tau) * tau + at  # the first ``at + 2kπ`` ≥ start
            return first <= stop

        wide = (reach > PERIODIC_REACH) | (a[1] - a[0] >= tau)
        lo = xp.where(wide | reaches(peak + math.pi), one[0], lo)
        hi = xp.where(wide | reaches(peak), one[1], hi)
        return _nan_where(xp, _infinite(xp, a), lo, hi)

    return interval


def _i_recip(xp: Namespace, a: Bounds) -> Bounds:
    lo, hi = a
    # 1/x is decreasing on each side of 0; a range that holds 0 (of either sign) reaches
    # both infinities (1/±0 = ±inf), never NaN: all reals.
    return _everything_where(xp, _has_zero(a), xp.reciprocal(hi), xp.reciprocal(lo))


def _i_not(xp: Namespace, a: Bounds) -> Bounds:
    lo, hi = a
    zero_possible = (lo <= 0) & (hi >= 0)
    always_zero = (lo == 0) & (hi == 0)
    return (
        xp.where(always_zero, 1, 0).astype(lo.dtype),
        xp.where(zero_possible, 1, 0).astype(lo.dtype),
    )


def _infinite(xp: Namespace, a: Bounds) -> Array:
    return xp.isinf(a[0]) | xp.isinf(a[1])


def _has_zero(a: Bounds) -> Array:
    return (a[0] <= 0) & (a[1] >= 0)


def _i_add(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    # inf + -inf is NaN at a point even where the bounds' sums are not.
    bad = ((a[1] == xp.inf) & (b[0] == -xp.inf)) | ((a[0] == -xp.inf) & (b[1] == xp.inf))
    return _nan_where(xp, bad, a[0] + b[0], a[1] + b[1])


def _i_sub(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    bad = ((a[1] == xp.inf) & (b[1] == xp.inf)) | ((a[0] == -xp.inf) & (b[0] == -xp.inf))
    return _nan_where(xp, bad, a[0] - b[1], a[1] - b[0])


def _i_mul(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    p = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    lo = xp.minimum(xp.minimum(p[0], p[1]), xp.minimum(p[2], p[3]))
    hi = xp.maximum(xp.maximum(p[0], p[1]), xp.maximum(p[2], p[3]))
    bad = (_has_zero(a) & _infinite(xp, b)) | (_has_zero(b) & _infinite(xp, a))  # 0 * inf
    return _nan_where(xp, bad, lo, hi)


def _i_div(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    q = (a[0] / b[0], a[0] / b[1], a[1] / b[0], a[1] / b[1])
    lo = xp.minimum(xp.minimum(q[0], q[1]), xp.minimum(q[2], q[3]))
    hi = xp.maximum(xp.maximum(q[0], q[1]), xp.maximum(q[2], q[3]))
    # Only 0 / 0 and inf / inf are NaN; a divisor's range that holds 0 (of either sign)
    # otherwise reaches both infinities: all reals.
    bad = (_has_zero(a) & _has_zero(b)) | (_infinite(xp, a) & _infinite(xp, b))
    lo, hi = _everything_where(xp, _has_zero(b), lo, hi)
    return _nan_where(xp, bad, lo, hi)


def _i_min(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    return xp.minimum(a[0], b[0]), xp.minimum(a[1], b[1])


def _i_max(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    return xp.maximum(a[0], b[0]), xp.maximum(a[1], b[1])


def _i_atan2(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    pi = xp.full_like(a[0], xp.pi)
    lo, hi = _widen(xp, -pi, pi)
    # XLA:CPU's atan2 of two subnormals (flushed to zero) is NaN, not IEEE's ±0 or ±pi.
    tiny = xp.finfo(a[0].dtype).tiny
    near_zero = [(v[0] < tiny) & (v[1] > -tiny) for v in (a, b)]
    return _nan_where(xp, near_zero[0] & near_zero[1], lo, hi)


def _i_mod(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    m = xp.maximum(xp.abs(b[0]), xp.abs(b[1]))
    bad = _has_zero(b) | _infinite(xp, a)
    return _nan_where(xp, bad, xp.zeros_like(m), m)


def _i_compare(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    less, greater = a[1] < b[0], a[0] > b[1]
    equal = (a[0] == a[1]) & (b[0] == b[1]) & (a[0] == b[0])
    lo = xp.where(less, -1, xp.where(greater, 1, xp.where(equal, 0, -1)))
    hi = xp.where(less, -1, xp.where(greater, 1, xp.where(equal, 0, 1)))
    return lo.astype(a[0].dtype), hi.astype(a[0].dtype)


def _i_and(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    # a if a == 0 else b: b where a cannot be 0, 0 where it must be, else their hull.
    never_zero = (a[0] > 0) | (a[1] < 0)
    always_zero = (a[0] == 0) & (a[1] == 0)
    zero = xp.zeros_like(a[0])
    lo = xp.where(never_zero, b[0], xp.where(always_zero, zero, xp.minimum(b[0], zero)))
    hi = xp.where(never_zero, b[1], xp.where(always_zero, zero, xp.maximum(b[1], zero)))
    return lo, hi


def _i_or(xp: Namespace, a: Bounds, b: Bounds) -> Bounds:
    # a if a != 0 else b: a where it cannot be 0, b where it must be, else their hull.
    never_zero = (a[0] > 0) | (a[1] < 0)
    always_zero = (a[0] == 0) & (a[1] == 0)
    lo = xp.where(never_zero, a[0], xp.where(always_zero, b[0], xp.minimum(a[0], b[0])))
    hi = xp.where(never_zero, a[1], xp.where(always_zero, b[1], xp.maximum(a[1], b[1])))
    return lo, hi


# Choice rules: which argument min/max always returns on the box (strictly, so that the
# replacement is exact: with ties the two may differ in the sign of a zero).


def _choose_min(xp: Namespace, a: Bounds, b: Bounds) -> Array:
    return xp.where(a[1] < b[0], 1, xp.where(b[1] < a[0], 2, 0))


def _choose_max(xp: Namespace, a: Bounds, b: Bounds) -> Array:
    return xp.where(a[0] > b[1], 1, xp.where(b[0] > a[1], 2, 0))


# Sign choices (arguments NaN-free). min(a, b) < 0 iff a < 0 or b < 0, so where a is
# never < 0 the op is < 0 exactly where b is; min > 0 iff both are, so where a is always
# > 0 it is > 0 exactly where b is. max is the mirror image.


def _sign_choose_min(xp: Namespace, a: Bounds, b: Bounds, positive: bool) -> Array:
    if positive:
        return xp.where(b[0] > 0, 1, xp.where(a[0] > 0, 2, 0))
    return xp.where(b[0] >= 0, 1, xp.where(a[0] >= 0, 2, 0))


def _sign_choose_max(xp: Namespace, a: Bounds, b: Bounds, positive: bool) -> Array:
    if positive:
        return xp.where(b[1] <= 0, 1, xp.where(a[1] <= 0, 2, 0))
    return xp.where(b[1] < 0, 1, xp.where(a[1] < 0, 2, 0))


# Atoms: rows of a specialised program (ir.specialise) whose value is a function of the
# inputs given by the row's own numbers, ``p`` (``PARAMS`` of them, in the working dtype).
# ``affine``: (a·x + b·y) + (c·z + d) (p[0:4]); ``quadric``: Σ wᵢ·lᵢ² + k over three affine
# forms lᵢ (p = w₁ a₁ b₁ c₁ d₁ w₂ … d₃ k). Their interval rules evaluate the same
# expression, in the same order, at the box's corner that minimises (maximises) each
# product: every step is monotone and correctly rounded, so the bounds hold. Each product
# is rounded on its own (:func:`_rounded_zero`), so every evaluator computes an atom's
# value bit for bit alike; the bounds are widened by 4 ulps of the terms' magnitude all
# the same, a margin for any compiler that would fuse a product into a sum.

#: Numbers an atom row carries (a row's ``params`` in a Program; zeros elsewhere).
PARAMS = 16


def _rounded_zero(xp: Namespace, p: Array) -> Array | None:
    """-0.0 (NaN if ``p[0]`` is), computed at run time from the row's numbers: adding it to
    a product rounds the product on its own (``t + -0`` is ``t``), whether or not a
    compiler fuses the two into a fused multiply-add (``fma(a, b, -0)`` rounds ``a·b``
    once). Products an atom sums are written ``a·b + zero`` (:func:`_product`), so no
    compiler can fuse one of them into the next sum, and every evaluator (XLA's fusions on
    CPU and GPU, NumPy) rounds an atom's steps alike: culled and brute force agree bit for
    bit. A literal -0.0 would not do: simplifiers drop ``t + -0``. NumPy rounds every
    product on its own anyway, so there (None) the addition is skipped unless ``p[0]`` is
    NaN: the same numbers, with a quadric's passes over a 2-D tile cut from 21 to 15."""
    if xp is np and not np.isnan(p[0]).any():
        return None
    return xp.where(p[0] != p[0], p[0], -0.0)


def _product(a: Array, b: Array, zero: Array | None) -> Array:
    """``a·b``, rounded on its own: ``a·b + zero`` (:func:`_rounded_zero`)."""
    return a * b if zero is None else a * b + zero


def _linear(
    xp: Namespace, p: Array, k: int, x: Array, y: Array, z: Array, zero: Array | None
) -> Array:
    """``(a·x + b·y) + (c·z + d)``: grouped so that a kernel whose x varies along columns
    and y along rows computes ``a·x`` once per column, ``b·y`` once per row and ``c·z + d``
    once (z is one number in a 2-D tile), leaving one addition per pixel."""
    return (_product(p[k], x, zero) + _product(p[k + 1], y, zero)) + (
        _product(p[k + 2], z, zero) + p[k + 3]
    )


def _sum_bounds(xp: Namespace, terms: list[Bounds], last: Array, grouped: bool) -> Bounds:
    """Bounds of ``((t₀ + t₁) + t₂) + last`` (``(t₀ + t₁) + (t₂ + last)`` if ``grouped``),
    each tᵢ in its interval, NaN where one term may be +inf and another -inf (their sum is
    NaN there). Widened by 4 ulps of the terms' magnitude: a margin for a product fused
    into the next sum (a fused multiply-add rounds once instead of twice), which the value
    rules rule out."""
    if grouped:
        low = (terms[0][0] + terms[1][0]) + (terms[2][0] + last)
        high = (terms[0][1] + terms[1][1]) + (terms[2][1] + last)
    else:
        low = ((terms[0][0] + terms[1][0]) + terms[2][0]) + last
        high = ((terms[0][1] + terms[1][1]) + terms[2][1]) + last
    size = [xp.maximum(xp.abs(lo), xp.abs(hi)) for lo, hi in terms]
    margin = (((size[0] + size[1]) + size[2]) + xp.abs(last)) * (4 * xp.finfo(low.dtype).eps)
    up = [hi == xp.inf for _, hi in terms]
    down = [lo == -xp.inf for lo, _ in terms]
    bad = (
        (up[0] & (down[1] | down[2]))
        | (up[1] & (down[0] | down[2]))
        | (up[2] & (down[0] | down[1]))
    )
    return _nan_where(xp, bad, low - margin, high + margin)


def _linear_bounds(xp: Namespace, p: Array, k: int, box: tuple[Bounds, ...]) -> Bounds:
    products = [(p[k + j] * lo, p[k + j] * hi) for j, (lo, hi) in enumerate(box)]
    terms = [(xp.minimum(a, b), xp.maximum(a, b)) for a, b in products]
    return _sum_bounds(xp, terms, p[k + 3], grouped=True)


def _affine(xp: Namespace, p: Array, x: Array, y: Array, z: Array) -> Array:
    return _linear(xp, p, 0, x, y, z, _rounded_zero(xp, p))


def _i_affine(xp: Namespace, p: Array, *box: Bounds) -> Bounds:
    return _linear_bounds(xp, p, 0, box)


def _quadric(xp: Namespace, p: Array, x: Array, y: Array, z: Array) -> Array:
    zero = _rounded_zero(xp, p)
    terms = []
    for k in (0, 5, 10):
        line = _linear(xp, p, k + 1, x, y, z, zero)
        terms.append(_product(p[k], _product(line, line, zero), zero))
    return ((terms[0] + terms[1]) + terms[2]) + p[15]


def _i_quadric(xp: Namespace, p: Array, *box: Bounds) -> Bounds:
    terms = []
    for k in (0, 5, 10):
        square_lo, square_hi = _i_square(xp, _linear_bounds(xp, p, k + 1, box))
        a, b = p[k] * square_lo, p[k] * square_hi  # w < 0 swaps them
        terms.append((xp.minimum(a, b), xp.maximum(a, b)))
    return _sum_bounds(xp, terms, p[15], grouped=False)


# ``affine-max`` and ``affine-min``: the max (min) of four affine forms (p[0:4], p[4:8],
# p[8:12], p[12:16]; fewer forms repeat the first), a convex polygon (the complement of
# one) in one row: a specialised program's tree of ``max`` (``min``) rows over ``affine``
# rows, each form computed as the ``affine`` row computes it, so the value is the tree's
# bit for bit, and the interval is the tree's (the max of the forms' bounds, NaN where
# one is). One row instead of up to seven: the culling interpreters pay per row.
#: Where each affine form of an ``affine-max`` or ``affine-min`` row starts in its numbers.
HULL_FORMS = (0, 4, 8, 12)


def _hull(name: str, fn: str) -> Op:
    """The atom ``name``: the extremum ``fn`` (``maximum`` or ``minimum``) of four forms."""
    pick = _extremum(fn)

    def value(xp: Namespace, p: Array, x: Array, y: Array, z: Array) -> Array:
        zero = _rounded_zero(xp, p)
        out = None
        for k in HULL_FORMS:
            v = _linear(xp, p, k, x, y, z, zero)
            out = v if out is None else pick(xp, out, v)
        return out

    def bounds(xp: Namespace, p: Array, *box: Bounds) -> Bounds:
        lo = hi = None
        for k in HULL_FORMS:
            low, high = _linear_bounds(xp, p, k, box)
            lo = low if lo is None else getattr(xp, fn)(lo, low)
            hi = high if hi is None else getattr(xp, fn)(hi, high)
        return lo, hi

    return Op(name, 0, None, params=PARAMS, source=value, source_interval=bounds, forms=HULL_FORMS)


# Partial derivatives: one array per argument, the same shape as ``out``.


def _p_const(value: float) -> PartialsRule:
    def partials(xp: Namespace, out: Array, *args: Array) -> tuple[Array, ...]:
        return tuple(xp.full_like(out, value) for _ in args)

    return partials


def _p_neg(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (xp.full_like(out, -1),)


def _p_abs(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (xp.sign(a),)  # 0 at 0


def _p_square(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (a + a,)


def _safe_inverse(xp: Namespace, v: Array) -> Array:
    """1 / v where v > 0, else 0: a derivative that is infinite (or NaN) becomes 0."""
    positive = v > 0
    return xp.where(positive, 1 / xp.where(positive, v, 1), 0)


def _p_sqrt(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (0.5 * _safe_inverse(xp, out),)


def _p_recip(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (-(out * out),)


def _p_sin(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (xp.cos(a),)


def _p_cos(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (-xp.sin(a),)


def _p_tan(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (1 + out * out,)


def _p_asin(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (_safe_inverse(xp, xp.sqrt(1 - a * a)),)


def _p_acos(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (-_safe_inverse(xp, xp.sqrt(1 - a * a)),)


def _p_atan(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (1 / (1 + a * a),)


def _p_exp(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (out,)


def _p_ln(xp: Namespace, out: Array, a: Array) -> tuple[Array, ...]:
    return (1 / a,)


def _p_sub(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    return xp.ones_like(out), xp.full_like(out, -1)


def _p_mul(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    return b, a


def _p_div(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    return 1 / b, -out / b


def _p_min(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    pa = xp.where(a < b, 1.0, xp.where(b < a, 0.0, 0.5)).astype(out.dtype)
    return pa, 1 - pa


def _p_max(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    pa = xp.where(a > b, 1.0, xp.where(b > a, 0.0, 0.5)).astype(out.dtype)
    return pa, 1 - pa


def _p_atan2(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    inverse = _safe_inverse(xp, a * a + b * b)  # 0 at (0, 0)
    return b * inverse, -a * inverse


def _p_mod(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    # out = a - q |b| with the integer quotient q held constant.
    m = xp.abs(b)
    q = xp.round((a - out) / xp.where(m > 0, m, 1))
    return xp.ones_like(out), -q * xp.sign(b)


def _p_and(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    zero = (a == 0).astype(out.dtype)
    return zero, 1 - zero


def _p_or(xp: Namespace, out: Array, a: Array, b: Array) -> tuple[Array, ...]:
    nonzero = (a != 0).astype(out.dtype)
    return nonzero, 1 - nonzero


def interval_step(op: Op, xp: Namespace, *args: Bounds) -> Bounds:
    """Apply ``op``'s interval rule, poisoning the result where an argument may be NaN."""
    assert op.interval is not None
    lo, hi = op.interval(xp, *args)
    poisoned = None
    for alo, ahi in args:
        bad = xp.isnan(alo) | xp.isnan(ahi)
        poisoned = bad if poisoned is None else poisoned | bad
    return (lo, hi) if poisoned is None else _nan_where(xp, poisoned, lo, hi)


OPS: tuple[Op, ...] = (
    # Inputs and constants: evaluators supply their values and intervals.
    Op("var-x", 0, None),
    Op("var-y", 0, None),
    Op("var-z", 0, None),
    Op("const", 0, None),
    # Unary.
    Op("neg", 1, _unary("negative"), _i_neg, sign_pass="flip", partials=_p_neg, linear="always"),
    Op("abs", 1, _unary("abs"), _i_abs, partials=_p_abs),
    Op("square", 1, _unary("square"), _i_square, partials=_p_square, product=True),
    Op("sqrt", 1, _unary("sqrt"), _i_sqrt, partials=_p_sqrt),
    Op("recip", 1, _unary("reciprocal"), _i_recip, partials=_p_recip),
    Op("floor", 1, _unary("floor"), _monotone("floor"), partials=_p_const(0)),
    Op("ceil", 1, _unary("ceil"), _monotone("ceil"), partials=_p_const(0)),
    Op("round", 1, _round, _i_round, partials=_p_const(0)),
    Op("sin", 1, _unary("sin"), _i_wave("sin", math.pi / 2), partials=_p_sin),
    Op("cos", 1, _unary("cos"), _i_wave("cos", 0.0), partials=_p_cos),
    Op("tan", 1, _tan, _i_tan, partials=_p_tan),
    Op("asin", 1, _unary("arcsin"), _i_arc("arcsin", increasing=True), partials=_p_asin),
    Op("acos", 1, _unary("arccos"), _i_arc("arccos", increasing=False), partials=_p_acos),
    Op("atan", 1, _unary("arctan"), _monotone("arctan", exact=False), partials=_p_atan),
    Op("exp", 1, _exp, _i_exp, partials=_p_exp),
    Op("ln", 1, _unary("log"), _i_ln, partials=_p_ln),
    Op("not", 1, _not, _i_not, partials=_p_const(0)),
    # Binary.
    Op("add", 2, _binary("add"), _i_add, commutative=True, partials=_p_const(1), linear="always"),
    Op("sub", 2, _binary("subtract"), _i_sub, partials=_p_sub, linear="always"),
    Op(
        "mul",
        2,
        _binary("multiply"),
        _i_mul,
        commutative=True,
        partials=_p_mul,
        product=True,
        linear="scaled",
    ),
    Op("div", 2, _binary("divide"), _i_div, partials=_p_div, linear="scaled"),
    Op(
        "min",
        2,
        _extremum("minimum"),
        _i_min,
        commutative=True,
        choose=_choose_min,
        sign_pass="same",
        sign_choose=_sign_choose_min,
        partials=_p_min,
        linear="equal",
    ),
    Op(
        "max",
        2,
        _extremum("maximum"),
        _i_max,
        commutative=True,
        choose=_choose_max,
        sign_pass="same",
        sign_choose=_sign_choose_max,
        partials=_p_max,
        linear="equal",
    ),
    Op("atan2", 2, _atan2, _i_atan2, partials=_p_atan2),
    Op("mod", 2, _mod, _i_mod, partials=_p_mod),
    Op("compare", 2, _compare, _i_compare, partials=_p_const(0)),
    Op("and", 2, _and, _i_and, partials=_p_and),
    Op("or", 2, _or, _i_or, partials=_p_or),
    # Atoms (specialised programs only): no partials, by design. A specialised program
    # keeps the original's sign, not its value, so values and derivatives are always
    # the original program's.
    Op("affine", 0, None, params=4, source=_affine, source_interval=_i_affine, forms=(0,)),
    Op(
        "quadric",
        0,
        None,
        params=PARAMS,
        source=_quadric,
        source_interval=_i_quadric,
        forms=(1, 6, 11),
    ),
    _hull("affine-max", "maximum"),
    _hull("affine-min", "minimum"),
)

OPCODE: dict[str, int] = {op.name: code for code, op in enumerate(OPS)}

VAR_X, VAR_Y, VAR_Z, CONST = (OPCODE[n] for n in ("var-x", "var-y", "var-z", "const"))
INPUTS: tuple[int, ...] = (VAR_X, VAR_Y, VAR_Z)
AFFINE, QUADRIC = OPCODE["affine"], OPCODE["quadric"]
AFFINE_MAX, AFFINE_MIN = OPCODE["affine-max"], OPCODE["affine-min"]
#: Opcodes whose rows carry numbers (``params``) and compute from the inputs.
ATOMS: tuple[int, ...] = tuple(code for code, op in enumerate(OPS) if op.source is not None)
