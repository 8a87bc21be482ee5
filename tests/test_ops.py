"""Op conformance: every opcode through every evaluator, judged by the float64 oracle.

The contract. The oracle's semantics, the op table's value rules run by NumPy in float64
(:func:`pj.reference.evaluate`), define every op; they are pinned first by hand
(``SEMANTICS``: the README's table, rounding ties, domain edges, NaN rules). Then every
evaluator in ``EVALUATORS`` runs every opcode (the programs ``x var-x / y var-y / r OP x
[y]``) on the grid ``SPECIAL × SPECIAL`` of awkward values (NaN, ±inf, ±0, rounding ties,
domain edges, huge and tiny numbers) rounded to the evaluator's dtype, and is held to the
judge (the op's rule in float64 NumPy on those same, representable, inputs, rounded to
the dtype) by the kind of result it declares:

* ``values``: the same NaNs, the same infinities, the same zeros with the same sign, and
  every other value within the evaluator's ``ulps`` (relative, in its dtype; 0 means bit
  for bit). The oracle is registered too: it must give its own rules bit for bit through
  its interpreter (operand order, inputs, liveness);
* ``signs``: ``value < 0`` exactly where the judge's is (NaN is not < 0);
* ``derivatives``: values as above; forward-mode tangents along (1, 0) and (0, 1) equal
  to the op table's partials rules (float64 NumPy) applied to those tangents as dual
  numbers do (``∂a · da + ∂b · db``: an infinite partial times a zero tangent is NaN);
  reverse mode equal to the partials themselves (so to forward mode wherever they are
  finite); both within 1e-6 of central differences of the oracle wherever the op is
  smooth, away from huge and tiny arguments, and not under a documented convention;
* ``intervals``: over boxes around the awkward values (``AXIS_BOXES``), ``[lo, hi]`` holds
  the judge's value at the box's corners and at every awkward value inside it, or has a
  NaN bound (unknown). An evaluator that prunes returns, per box, ``None`` exactly where
  the interval decides the sign (``hi < 0`` or ``lo >= 0``), and otherwise a program
  with the full program's sign (``< 0``, by the oracle) at those points.

Outside the guarantees: values whose magnitude is subnormal in the dtype (XLA:CPU flushes
them to zero in arithmetic and comparisons, not everywhere), and the sign of a derivative
that is zero. The sign of the zero that ``min``/``max`` return from a tie of +0 and -0 is
checked on its own (:func:`test_zero_ties`): -0 < +0 (IEEE 754-2019, XLA's order; NumPy's
own ``minimum`` returns its second argument, so the op table pins the order for it).

A new evaluator joins with one line in ``EVALUATORS``: its kind, an adapter ``run(program,
x, y)`` (``run(program, boxes)`` for intervals) whose inputs already have its dtype, the
dtype, and for values its tolerance. A new opcode joins by its line in the op table and a
hand-pinned case in ``SEMANTICS``; every evaluator then runs it. A disagreement found and
not yet fixed goes in ``KNOWN`` (a strict xfail of that one case), never in a tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.evaluators.leaf_kernels import leaf_kernel
from prospero_jax.evaluators.scan import value_function
from prospero_jax.evaluators.tape import Tapes, bucket, register_capacity
from prospero_jax.ir.ops import OPS

NAN, INF = math.nan, math.inf
SPECIAL = np.array(
    [
        NAN,
        INF,
        -INF,
        0.0,
        -0.0,
        1.0,  # domain edges of asin and acos
        -1.0,
        0.5,
        -0.5,
        2.5,  # rounding ties
        -2.5,
        0.49999999999999994,  # the float64 number below 0.5: floor(a + 0.5) rounds it up
        0.4999999701976776,  # the float32 one
        3.0,
        -7.25,
        math.pi / 2,  # tan's pole, as near as floats get
        10.0,
        -10.0,
        100000.0,  # exp overflows; sin needs a long argument reduction
        -30000.0,
        1e-30,  # tiny, still normal in float32
        1e30,  # huge: its square overflows float32
        -1e30,
        1e-300,  # 0 in float32
        1e300,  # inf in float32
    ]
)
VALUE_OPS = [op for op in OPS if op.rule is not None]


def program_for(op: pj.Op) -> pj.Program:
    body = f"r {op.name} x" if op.arity == 1 else f"r {op.name} x y"
    return pj.parse(f"x var-x\ny var-y\n{body}", source=op.name)


def oracle(name: str, *args: float) -> float:
    op = next(o for o in OPS if o.name == name)
    return float(pj.reference.evaluate(program_for(op), *(list(args) + [0.0] * (2 - len(args)))))


# ---------------------------------------------------------------------------------------
# The judge, pinned by hand.

SEMANTICS = [
    ("round", (2.5,), 3.0),
    ("round", (-2.5,), -3.0),
    ("round", (0.49999999999999994,), 0.0),
    ("round", (-0.4,), -0.0),
    ("floor", (-1.5,), -2.0),
    ("ceil", (-1.5,), -1.0),
    ("mod", (-1.0, 3.0), 2.0),
    ("mod", (7.0, -3.0), 1.0),
    ("mod", (-7.5, 2.0), 0.5),
    ("mod", (1.0, 0.0), NAN),
    ("compare", (1.0, 2.0), -1.0),
    ("compare", (2.0, 1.0), 1.0),
    ("compare", (2.0, 2.0), 0.0),
    ("compare", (NAN, 2.0), NAN),
    ("compare", (INF, INF), 0.0),
    ("and", (0.0, 5.0), 0.0),
    ("and", (2.0, 5.0), 5.0),
    ("and", (NAN, 5.0), 5.0),
    ("or", (0.0, 5.0), 5.0),
    ("or", (2.0, 5.0), 2.0),
    ("or", (NAN, 5.0), NAN),
    ("not", (0.0,), 1.0),
    ("not", (-0.0,), 1.0),
    ("not", (3.0,), 0.0),
    ("not", (NAN,), 0.0),
    ("min", (NAN, 1.0), NAN),
    ("max", (1.0, NAN), NAN),
    ("sqrt", (-1.0,), NAN),
    ("ln", (0.0,), -INF),
    ("ln", (-1.0,), NAN),
    ("asin", (2.0,), NAN),
    ("recip", (0.0,), INF),
    ("recip", (-0.0,), -INF),
    ("div", (1.0, 0.0), INF),
    ("atan2", (1.0, 0.0), math.pi / 2),
    ("atan2", (0.0, -1.0), math.pi),
    ("square", (-3.0,), 9.0),
    ("neg", (0.0,), -0.0),
]
#: Ops that are one libm function each, with no special case beyond IEEE 754's.
PLAIN = {"abs", "sin", "cos", "tan", "acos", "atan", "exp", "add", "sub", "mul"}


@pytest.mark.parametrize(("name", "args", "expected"), SEMANTICS)
def test_oracle_semantics(name: str, args: tuple[float, ...], expected: float) -> None:
    got = oracle(name, *args)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
        assert math.copysign(1, got) == math.copysign(1, expected)


def test_every_opcode_has_a_semantics_case() -> None:
    covered = {name for name, _, _ in SEMANTICS} | PLAIN
    assert covered == {op.name for op in VALUE_OPS}


# ---------------------------------------------------------------------------------------
# Adapters: each runs one evaluator on a program, at points (or boxes) of its dtype.


class Derivatives(NamedTuple):
    """Values, forward-mode tangents along (1, 0) and (0, 1), reverse-mode (d/dx, d/dy)."""

    value: np.ndarray
    forward: tuple[np.ndarray, np.ndarray]
    reverse: tuple[np.ndarray, np.ndarray]


class Boxes(NamedTuple):
    """Boxes ``[xlo, xhi] × [ylo, yhi]``, one per entry, in the evaluator's dtype."""

    xlo: np.ndarray
    xhi: np.ndarray
    ylo: np.ndarray
    yhi: np.ndarray


class Bounds(NamedTuple):
    """An interval per box, and for an evaluator that prunes, a program per box (``None``
    where the interval decides the sign); ``pruned`` is None if it does not prune."""

    lo: np.ndarray
    hi: np.ndarray
    pruned: list[pj.Program | None] | None = None


def x64(dtype: Any) -> Any:
    """JAX's precision for ``dtype``: float64 needs ``jax_enable_x64``."""
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def oracle_values(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return pj.reference.evaluate(program, x, y)


def jitted(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The unrolled field under ``jax.jit``."""
    with x64(x.dtype):
        return np.asarray(jax.jit(pj.to_function(program))(x, y))


def eager(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The unrolled field op by op, no jit, on the tape as written."""
    with x64(x.dtype):
        return np.asarray(pj.to_function(program, simplify=False)(x, y))


def interpreted(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The value interpreter: the tape as data, one compilation for every op."""
    with x64(x.dtype):
        return np.asarray(value_function(program)(x, y, np.zeros_like(x)))


def leaf(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The culling renderer's leaf kernel on one tile whose pixels are the grid's points
    (packed as ``renderers/culled.py`` packs a tape); its result is ``value < 0``."""
    xs, ys = x[0], y[:, 0]
    side = len(xs)
    assert x.shape == y.shape == (side, side), "the points must be a square grid"
    assert np.array_equal(x, np.broadcast_to(xs, x.shape), equal_nan=True)
    assert np.array_equal(y, np.broadcast_to(ys[:, None], y.shape), equal_nan=True)
    dtype = x.dtype.name
    with x64(dtype):
        tape = Tapes.pack(pj.simplify(program), dtype)
        n = len(tape)
        inside = leaf_kernel(
            tape.padded(bucket(n, 8)),
            np.zeros(1, np.int32),  # one tape, starting at row 0
            np.array([n], np.int32),
            np.int32(1),
            xs[None, :],
            ys[None, :],
            np.zeros(1, dtype),  # z = 0
            registers=register_capacity(n),
            side=side,
        )
    return np.asarray(inside).reshape(side, side)  # [row, col] is (xs[col], ys[row])


def dual(mode: Literal["interpreter", "unrolled"]) -> Callable[..., Derivatives]:
    """``pj.to_function(p, derivatives=mode)`` under ``jax.jvp`` and ``jax.vjp``."""

    def run(program: pj.Program, x: np.ndarray, y: np.ndarray) -> Derivatives:
        one, zero = np.ones_like(x), np.zeros_like(x)
        with x64(x.dtype):
            f = pj.to_function(program, derivatives=mode)
            value, along_x = jax.jvp(f, (x, y), (one, zero))
            _, along_y = jax.jvp(f, (x, y), (zero, one))
            _, pullback = jax.vjp(f, x, y)
            gx, gy = pullback(one)  # f is pointwise: one pullback gives every gradient
        value, along_x, along_y, gx, gy = map(np.asarray, (value, along_x, along_y, gx, gy))
        return Derivatives(value, (along_x, along_y), (gx, gy))

    return run


def interval_function(program: pj.Program, boxes: Boxes) -> Bounds:
    """``pj.to_interval_function``, jitted, on all the boxes at once."""
    with x64(boxes.xlo.dtype):
        g = jax.jit(pj.to_interval_function(program))
        lo, hi = g(pj.Interval(boxes.xlo, boxes.xhi), pj.Interval(boxes.ylo, boxes.yhi))
        return Bounds(np.asarray(lo), np.asarray(hi))


def shaped_intervals(program: pj.Program, boxes: Boxes) -> Bounds:
    """``to_shaped_intervals`` (the solids' walk's interval closure, its numbers an
    argument), jitted, on all the boxes at once (z = 0)."""
    from prospero_jax.evaluators.interval import to_shaped_intervals
    from prospero_jax.evaluators.lower import constant_array

    dtype = boxes.xlo.dtype
    with x64(dtype):
        shaped = to_shaped_intervals(program)
        numbers = tuple(constant_array(v, dtype) for v in shaped.numbers)
        zero = np.zeros_like(boxes.xlo)
        box = np.stack([boxes.xlo, boxes.xhi, boxes.ylo, boxes.yhi, zero, zero])
        lo, hi = jax.jit(shaped.bounds)(numbers, box)
        return Bounds(np.asarray(lo), np.asarray(hi))


def prune(program: pj.Program, boxes: Boxes) -> Bounds:
    """``pj.prune`` (the culling renderer's prune kernel, and its pruned tape), a box a call."""
    target = pj.Target(dtype=boxes.xlo.dtype.name)
    lo, hi, pruned = [], [], []
    for x0, x1, y0, y1 in zip(*boxes, strict=True):
        box = (float(x0), float(x1), float(y0), float(y1))
        low, high, program_there = pj.prune(program, box, target=target)
        lo.append(low)
        hi.append(high)
        pruned.append(program_there)
    return Bounds(np.array(lo), np.array(hi), pruned)


Kind = Literal["values", "signs", "derivatives", "intervals"]


@dataclass(frozen=True)
class Evaluator:
    """An evaluator under test: the kind of result it gives, its adapter, its dtype, and
    for values and derivatives its tolerance in ulps of that dtype (0: bit for bit)."""

    kind: Kind
    run: Callable[..., Any]
    dtype: str = "float64"
    ulps: int = 0

    @property
    def rtol(self) -> float:
        return self.ulps * float(np.finfo(self.dtype).eps)


#: Every evaluator, one line each. 4 ulps: XLA's libm and NumPy's differ by 1 or 2 in
#: transcendental functions (the correctly rounded ops agree bit for bit).
EVALUATORS: dict[str, Evaluator] = {
    "oracle": Evaluator("values", oracle_values),
    "jit-float64": Evaluator("values", jitted, "float64", ulps=4),
    "jit-float32": Evaluator("values", jitted, "float32", ulps=4),
    "eager-float64": Evaluator("values", eager, "float64", ulps=4),
    "interpreter-float64": Evaluator("values", interpreted, "float64", ulps=4),
    "interpreter-float32": Evaluator("values", interpreted, "float32", ulps=4),
    "leaf-float64": Evaluator("signs", leaf, "float64"),
    "leaf-float32": Evaluator("signs", leaf, "float32"),
    "dual-interpreter": Evaluator("derivatives", dual("interpreter"), "float64", ulps=4),
    "dual-unrolled": Evaluator("derivatives", dual("unrolled"), "float64", ulps=4),
    "interval-float64": Evaluator("intervals", interval_function, "float64"),
    "interval-float32": Evaluator("intervals", interval_function, "float32"),
    "shaped-interval-float64": Evaluator("intervals", shaped_intervals, "float64"),
    "shaped-interval-float32": Evaluator("intervals", shaped_intervals, "float32"),
    "prune-float64": Evaluator("intervals", prune, "float64"),
    "prune-float32": Evaluator("intervals", prune, "float32"),
}


# ---------------------------------------------------------------------------------------
# The judge and the checks, one per kind.


def grid(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``SPECIAL × SPECIAL`` rounded to ``dtype`` (1e300 is inf in float32, on purpose)."""
    with np.errstate(over="ignore"):
        x, y = np.meshgrid(SPECIAL, SPECIAL)
        return x.astype(dtype), y.astype(dtype)


def judged(op: pj.Op, x: np.ndarray, y: np.ndarray, dtype: str) -> np.ndarray:
    """The op's value rule on ``(x, y)`` in float64 NumPy (the oracle's semantics, pinned
    by ``SEMANTICS``), rounded to ``dtype``; as float64."""
    assert op.rule is not None
    args = (x.astype(np.float64), y.astype(np.float64))[: op.arity]
    with np.errstate(all="ignore"):
        value = np.broadcast_to(op.rule(np, *args), np.broadcast_shapes(x.shape, y.shape))
        return np.asarray(value.astype(dtype), np.float64)


def subnormal(v: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray((v != 0) & (np.abs(v) < np.finfo(dtype).tiny), bool)


def zero_tie(op: pj.Op, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where ``min``/``max`` compare +0 with -0 (checked by :func:`test_zero_ties`)."""
    tie = (x == 0) & (y == 0) & (np.signbit(x) != np.signbit(y))
    return tie if op.name in ("min", "max") else np.zeros(np.shape(x), bool)


def bad(x: np.ndarray, y: np.ndarray, where: np.ndarray) -> list[tuple[float, float]]:
    """The first few points of ``where``, for messages."""
    return list(zip(x[where].tolist(), y[where].tolist(), strict=True))[:6]


def assert_values(
    op: pj.Op,
    got: np.ndarray,
    expected: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    evaluator: Evaluator,
    what: str = "value",
    signed_zeros: bool = True,
) -> None:
    """``got`` is ``expected`` (the judge's, in the evaluator's dtype) by the contract."""
    got = np.asarray(got, np.float64)
    assert got.shape == expected.shape, what
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN at {bad(x, y, np.isnan(got) != nan)}"
    wrong = np.isinf(expected) & (got != expected)
    assert not wrong.any(), f"{what}: infinities differ at {bad(x, y, wrong)}: {got[wrong]}"
    zero = (expected == 0) & ~zero_tie(op, x, y)
    wrong = zero & (got != 0)
    if signed_zeros:
        wrong |= zero & (np.signbit(got) != np.signbit(expected))
    assert not wrong.any(), f"{what}: zeros differ at {bad(x, y, wrong)}: {got[wrong]}"
    ok = np.isfinite(expected) & (expected != 0) & ~subnormal(expected, evaluator.dtype)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=evaluator.rtol, atol=0, err_msg=what)


def check_values(op: pj.Op, evaluator: Evaluator) -> None:
    x, y = grid(evaluator.dtype)
    got = evaluator.run(program_for(op), x, y)
    assert_values(op, got, judged(op, x, y, evaluator.dtype), x, y, evaluator)


def check_signs(op: pj.Op, evaluator: Evaluator) -> None:
    x, y = grid(evaluator.dtype)
    got = np.asarray(evaluator.run(program_for(op), x, y))
    expected = judged(op, x, y, evaluator.dtype)
    assert got.dtype == bool
    assert got.shape == expected.shape
    wrong = ~subnormal(expected, evaluator.dtype) & (got != (expected < 0))
    assert not wrong.any(), f"value < 0 differs at {bad(x, y, wrong)}"


def check_derivatives(op: pj.Op, evaluator: Evaluator) -> None:
    assert op.partials is not None
    program = program_for(op)
    x, y = grid(evaluator.dtype)
    got = evaluator.run(program, x, y)
    assert_values(op, got.value, judged(op, x, y, evaluator.dtype), x, y, evaluator)

    # The op table's partials in float64 NumPy: what the derivatives are defined to be.
    args = (x.astype(np.float64), y.astype(np.float64))[: op.arity]
    with np.errstate(all="ignore"):
        out = judged(op, x, y, "float64")
        partials = [np.broadcast_to(p, x.shape) for p in op.partials(np, out, *args)]
        # As the dual step uses them (unroll.dual_step): a non-finite value carries no
        # derivative, and a zero or NaN partial selects nothing.
        partials = [np.where(np.isfinite(out) & (p != 0) & (p == p), p, 0) for p in partials]
        partials += [np.zeros(x.shape)] * (2 - op.arity)  # unary: nothing reads y
        for k in range(2):
            # As dual numbers compute it: ∂a · da + ∂b · db, so inf · 0 is NaN.
            tangent = partials[0] * float(k == 0)
            if op.arity == 2:
                tangent = tangent + partials[1] * float(k == 1)
            for mode, got_k, expected in (
                ("forward along", got.forward[k], tangent),
                ("reverse d/d", got.reverse[k], partials[k]),
            ):
                expected = expected.astype(evaluator.dtype)
                what = f"{mode} {'xy'[k]}"
                assert_values(op, got_k, expected, x, y, evaluator, what, signed_zeros=False)

    # The textbook derivative, where it exists: central differences of the oracle.
    compared = 0
    for k in range(op.arity):
        numeric, smooth = central_difference(program, x, y, k)
        ok = smooth & (np.abs(x) <= 1e4) & (np.abs(y) <= 1e4)
        ok &= ((np.abs(x) >= 1e-3) | (x == 0)) & ((np.abs(y) >= 1e-3) | (y == 0))
        if op.name in ("and", "or"):
            # Their documented convention, "follow the argument they return", holds even
            # where the op is flat: ∂ and(a, 0) / ∂a is 1 at a = 0, since it returns a.
            ok &= x != 0
        for mode, derivative in (("forward", got.forward[k]), ("reverse", got.reverse[k])):
            what = f"{mode} d/d{'xy'[k]}"
            derivative = np.asarray(derivative)[ok]
            np.testing.assert_allclose(derivative, numeric[ok], rtol=1e-6, atol=1e-8, err_msg=what)
        compared += int(ok.sum())
    assert compared > 0, "no smooth point to compare"


def central_difference(
    program: pj.Program, x: np.ndarray, y: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``∂f/∂(x, y)[k]`` by central differences of the oracle, and where ``f`` is smooth
    there (finite, and a one-sided difference agrees: no jump or kink)."""
    point = [x.astype(np.float64), y.astype(np.float64)]
    h = 1e-6 * np.maximum(1.0, np.abs(point[k]))

    def shifted(step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved = list(point)
        moved[k] = point[k] + step
        return pj.reference.evaluate(program, *moved), moved[k] - point[k]  # the true step

    with np.errstate(all="ignore"):
        (up, h_up), (down, h_down) = shifted(h), shifted(-h)
        (near, h_near), here = shifted(h / 10), pj.reference.evaluate(program, *point)
        numeric = (up - down) / (h_up - h_down)
        one_sided = (near - here) / h_near
        smooth = np.isfinite(numeric) & np.isfinite(one_sided)
        smooth &= np.abs(numeric - one_sided) < 1e-3 * np.maximum(1, np.abs(numeric))
    return numeric, smooth


#: Boxes along one axis: degenerate ones at awkward values, small ones around them
#: (straddling 0, holding rounding ties, crossing asin's domain edges, huge and tiny),
#: and half and whole lines.
AXIS_BOXES = [
    (-INF, -INF),
    (INF, INF),
    (-0.0, -0.0),
    (0.0, 0.0),
    (1.0, 1.0),
    (-2.5, -2.5),
    (0.49999999999999994, 0.49999999999999994),
    (-0.125, 0.125),
    (0.25, 0.75),
    (2.0, 3.0),
    (0.875, 1.125),
    (-1.125, -0.875),
    (-7.5, -7.0),
    (1e-30, 2e-30),
    (0.875e30, 1.125e30),
    (90000.0, 110000.0),
    (-INF, 0.0),
    (-INF, INF),
]


def boxes_for(op: pj.Op, dtype: str) -> tuple[Boxes, np.ndarray, np.ndarray, np.ndarray]:
    """``AXIS_BOXES`` in x (× in y, for binary ops) in ``dtype``, and the points to probe
    in each: its corners and every awkward value inside. Returns the boxes and the
    probes' x, y and box number."""
    with np.errstate(over="ignore"):
        axis = np.array(AXIS_BOXES).astype(dtype)
        specials = np.unique(SPECIAL[~np.isnan(SPECIAL)].astype(dtype))
    ys = axis if op.arity == 2 else np.zeros((1, 2), dtype)
    xlo, xhi, ylo, yhi = np.broadcast_arrays(
        axis[None, :, 0], axis[None, :, 1], ys[:, None, 0], ys[:, None, 1]
    )
    boxes = Boxes(*(v.reshape(-1).copy() for v in (xlo, xhi, ylo, yhi)))

    def probes(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return np.unique(np.r_[lo, hi, specials[(specials >= lo) & (specials <= hi)]])

    px, py, number = [], [], []
    for i, (x0, x1, y0, y1) in enumerate(zip(*boxes, strict=True)):
        gx, gy = np.meshgrid(probes(x0, x1), probes(y0, y1))
        px.append(gx.reshape(-1))
        py.append(gy.reshape(-1))
        number.append(np.full(gx.size, i))
    return boxes, np.concatenate(px), np.concatenate(py), np.concatenate(number)


def check_intervals(op: pj.Op, evaluator: Evaluator) -> None:
    program = program_for(op)
    boxes, px, py, number = boxes_for(op, evaluator.dtype)
    got = evaluator.run(program, boxes)
    lo, hi = (np.asarray(v, np.float64) for v in (got.lo, got.hi))
    assert lo.shape == hi.shape == boxes.xlo.shape
    values = judged(op, px, py, evaluator.dtype)
    values = np.where(subnormal(values, evaluator.dtype), 0.0, values)  # as XLA compares them
    known = ~(np.isnan(lo) | np.isnan(hi))
    assert known.any(), "every interval is unknown"
    assert np.all(lo[known] <= hi[known])
    missed = known[number] & ~((values >= lo[number]) & (values <= hi[number]))  # NaN too
    assert not missed.any(), (
        f"[lo, hi] {list(zip(lo[number][missed], hi[number][missed], strict=True))[:4]} "
        f"misses {values[missed][:4]} at {bad(px, py, missed)}"
    )
    if got.pruned is None:
        return
    assert len(got.pruned) == len(lo)
    for i, pruned in enumerate(got.pruned):
        decided = hi[i] < 0 or lo[i] >= 0  # False for NaN bounds
        assert (pruned is None) == decided, f"[{lo[i]}, {hi[i]}] but pruned to {pruned}"
        if pruned is None:
            continue
        at = number == i
        sign = pj.reference.evaluate(pruned, px[at], py[at]) < 0
        full = pj.reference.evaluate(program, px[at], py[at]) < 0
        assert np.array_equal(sign, full), f"the pruned program's sign differs in box {i}"


CHECKS: dict[Kind, Callable[[pj.Op, Evaluator], None]] = {
    "values": check_values,
    "signs": check_signs,
    "derivatives": check_derivatives,
    "intervals": check_intervals,
}


# ---------------------------------------------------------------------------------------
# The suite.

#: Disagreements found and not yet fixed, as strict xfails: (test, op, evaluator) → why.
#: (The first one found, min/max of +0 and -0, was fixed in the op table.)
KNOWN: dict[tuple[str, str, str], str] = {}


def cases(test: str, ops: list[pj.Op], kinds: tuple[Kind, ...]) -> list[Any]:
    """Every (op, evaluator) pair of ``test``, the known disagreements as strict xfails."""
    return [
        pytest.param(
            op,
            name,
            id=f"{op.name}-{name}",
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN[test, op.name, name])]
            if (test, op.name, name) in KNOWN
            else [],
        )
        for op in ops
        for name, evaluator in EVALUATORS.items()
        if evaluator.kind in kinds
    ]


@pytest.mark.parametrize(("op", "name"), cases("conforms", VALUE_OPS, tuple(CHECKS)))
def test_evaluator_conforms(op: pj.Op, name: str) -> None:
    evaluator = EVALUATORS[name]
    CHECKS[evaluator.kind](op, evaluator)


MIN_MAX = [op for op in VALUE_OPS if op.name in ("min", "max")]


@pytest.mark.parametrize(("op", "name"), cases("zero-ties", MIN_MAX, ("values", "derivatives")))
def test_zero_ties(op: pj.Op, name: str) -> None:
    """The zero ``min``/``max`` return from +0 and -0 has the oracle's sign: min -0,
    max +0, whichever argument holds it."""
    evaluator = EVALUATORS[name]
    x = np.array([[0.0, -0.0]], evaluator.dtype)
    y = np.array([[-0.0, 0.0]], evaluator.dtype)
    got = evaluator.run(program_for(op), x, y)
    value = np.asarray(got.value if evaluator.kind == "derivatives" else got)
    expected = judged(op, x, y, evaluator.dtype)
    assert np.array_equal(value, expected)
    assert np.array_equal(np.signbit(value), np.signbit(expected)), (value, expected)


@pytest.mark.parametrize(
    "name", [name for name, e in EVALUATORS.items() if e.kind in ("values", "signs")]
)
def test_exp_of_a_constant_nan_is_nan_in_every_evaluator(name: str) -> None:
    # XLA:CPU computed exp of a NaN it knew when compiling (a constant subexpression, in
    # a fused loop that reads no input) as whatever its registers held: a program of a
    # constant NaN, never inside, drew pixels (the op table's exp passes NaN through).
    evaluator = EVALUATORS[name]
    x, y = grid(evaluator.dtype)
    program = pj.parse("x var-x\ny var-y\nm const -1\nl ln m\nr exp l\n")
    got = np.asarray(evaluator.run(program, x, y))
    if evaluator.kind == "signs":
        assert not got.any()
    else:
        assert np.isnan(got).all(), got[~np.isnan(got)][:6]


def test_every_kind_has_a_check_and_an_evaluator() -> None:
    assert {e.kind for e in EVALUATORS.values()} == set(CHECKS)


@pytest.mark.parametrize("op", VALUE_OPS, ids=lambda op: op.name)
def test_the_leaf_kernel_and_the_fused_closure_compute_an_op_alike(op: pj.Op) -> None:
    """Culled == brute force needs every op's float32 value bit for bit alike in the leaf
    kernel (an op a ``lax.switch`` branch) and in the unrolled closure (the tape one fused
    loop): XLA:CPU lowers ``tan`` to ``sin / cos`` in the first and to its own
    approximation in the second (1 ulp apart at a quarter of these points), so the op
    table's ``tan`` is ``sin / cos``. (An op and the sum that uses it: the next test.)"""
    program = program_for(op)
    xs = np.linspace(-3, 3, 32, dtype=np.float32)
    ys = (np.linspace(-3, 3, 32) * 0.7).astype(np.float32)
    tape = Tapes.pack(pj.simplify(program), "float32")
    n = len(tape)
    kernel = leaf_kernel(
        tape.padded(bucket(n, 8)), np.zeros(1, np.int32), np.array([n], np.int32),
        np.int32(1), xs[None, :], ys[None, :], np.zeros(1, np.float32),
        registers=register_capacity(n), side=len(xs), values=True,
    )  # fmt: skip
    x, y = np.meshgrid(xs, ys)
    closure = jax.jit(pj.to_function(program))(x, y)
    np.testing.assert_array_equal(np.asarray(kernel).reshape(x.shape), np.asarray(closure))


@pytest.mark.parametrize("then", ["add", "sub", "mul"])
@pytest.mark.parametrize("op", VALUE_OPS, ids=lambda op: op.name)
def test_an_op_and_the_op_that_uses_it_are_computed_alike(op: pj.Op, then: str) -> None:
    """The same across two rows: XLA:CPU contracted a product and the sum that uses it
    into one fused multiply-add in the closure's fused loop (one rounding), while the
    leaf kernel rounds each row (at ~30 % of these points for ``mul`` then ``add``): the
    closure adds a run-time −0.0 to each product (``Op.product``), and every op followed
    by a sum, a difference or a product must give the leaf kernel's bits, with ``z`` a
    run-time value in both (a box's depth, a tile's plane)."""
    body = f"r {op.name} x" if op.arity == 1 else f"r {op.name} x y"
    program = pj.parse(f"x var-x\ny var-y\nz var-z\n{body}\ns {then} r z", source=op.name)
    rng = np.random.default_rng(3)
    tiles, side = 8, 32
    xs, ys = (rng.uniform(-3, 3, (tiles, side)).astype(np.float32) for _ in range(2))
    zs = rng.uniform(-3, 3, tiles).astype(np.float32)
    tape = Tapes.pack(pj.simplify(program), "float32")
    n = len(tape)
    kernel = leaf_kernel(
        tape.padded(bucket(n, 8)), np.zeros(tiles, np.int32), np.full(tiles, n, np.int32),
        np.int32(tiles), xs, ys, zs, registers=register_capacity(n), side=side, values=True,
    )  # fmt: skip
    closure = jax.jit(pj.to_function(program))(xs[:, None, :], ys[:, :, None], zs[:, None, None])
    np.testing.assert_array_equal(
        np.asarray(kernel).reshape(tiles, side, side), np.asarray(closure)
    )


def test_exact_culled_equals_brute_where_a_product_meets_a_sum_within_an_ulp_of_zero() -> None:
    """``x · y + z`` at a pixel where z is minus the float32 product, which the exact
    product lies below: rounded twice (the leaf kernel, the op table) the value is 0,
    fused into one multiply-add it is below 0. Brute force drew the pixel, culling did
    not, with ``exact=True`` too, until products were kept apart in the closure."""
    program = pj.parse("x var-x\ny var-y\nz var-z\ns mul x y\nr add s z")
    xs, ys = (a.astype(np.float32) for a in pj.View(64).axes())
    product = np.outer(ys, xs)  # [row, col], float32
    exact = np.outer(ys.astype(np.float64), xs.astype(np.float64))
    rows, cols = np.nonzero(exact < product)
    row, col = rows[0], cols[0]
    z = float(-product[row, col])
    for exact_mode in (False, True):
        brute = pj.render(program, 64, z=z, mode="brute", exact=exact_mode)
        culled = pj.render(program, 64, z=z, mode="culled", exact=exact_mode)
        assert brute[row, col] == culled[row, col] == 0
        np.testing.assert_array_equal(brute, culled)
