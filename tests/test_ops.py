"""Op conformance: every opcode, every evaluator, against the float64 oracle.

The oracle's semantics are pinned first by hand-computed values (the README's table);
then each evaluator is run on every opcode over a grid of special inputs (NaN, ±inf,
±0, ties for rounding, huge and tiny numbers) and held to the oracle.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.ir.ops import OPS

NAN, INF = math.nan, math.inf
SPECIAL = np.array(
    [
        NAN,
        INF,
        -INF,
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.5,
        -2.5,
        3.0,
        -7.25,
        1e-300,
        1e300,
        math.pi / 2,
        10.0,
        -10.0,
        100000.0,
        -30000.0,
        0.49999999999999994,
    ]
)
X, Y = np.meshgrid(SPECIAL, SPECIAL)
VALUE_OPS = [op for op in OPS if op.rule is not None]


def program_for(op: pj.Op) -> pj.Program:
    body = f"r {op.name} x" if op.arity == 1 else f"r {op.name} x y"
    return pj.parse(f"x var-x\ny var-y\n{body}", source=op.name)


def oracle(name: str, *args: float) -> float:
    op = next(o for o in OPS if o.name == name)
    return float(pj.reference.evaluate(program_for(op), *(list(args) + [0.0] * (2 - len(args)))))


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


def jitted(dtype: str) -> Callable[[pj.Program, np.ndarray, np.ndarray], np.ndarray]:
    def evaluate(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with jax.enable_x64(dtype == "float64"):
            f = jax.jit(pj.to_function(program))
            return np.asarray(f(x.astype(dtype), y.astype(dtype)), dtype=np.float64)

    return evaluate


def eager(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """JAX op by op, no jit, float64."""
    with jax.enable_x64(True):
        return np.asarray(pj.to_function(program, simplify=False)(x, y))


# Every evaluator with the relative tolerance it is held to against the float64 oracle.
EVALUATORS = {
    "jax-eager-float64": (eager, 1e-14),
    "jit-float64": (jitted("float64"), 1e-14),
    "jit-float32": (jitted("float32"), 2e-6),
}


@pytest.mark.parametrize("evaluator", EVALUATORS)
@pytest.mark.parametrize("op", VALUE_OPS, ids=lambda op: op.name)
def test_op_matches_oracle(op: pj.Op, evaluator: str) -> None:
    evaluate, rtol = EVALUATORS[evaluator]
    program = program_for(op)
    if rtol > 1e-10:
        # Lower precision: compare on inputs that float32 represents, against the oracle
        # on those same inputs; skip where float32 overflows or the op is ill-conditioned.
        with np.errstate(over="ignore"):  # 1e300 becomes inf in float32, on purpose
            x, y = (v.astype(np.float32).astype(np.float64) for v in (X, Y))
    else:
        x, y = X, Y
    expected = pj.reference.evaluate(program, x, y)
    got = evaluate(program, x, y)
    assert np.array_equal(np.isnan(got), np.isnan(expected)), "NaN pattern differs"
    finite = np.isfinite(expected)
    assert np.array_equal(
        got[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)]
    )
    ok = finite & (np.abs(expected) < 1e30)
    if rtol > 1e-10:
        ok &= well_conditioned(op, x, y)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=rtol, atol=rtol * 1e-30)


def well_conditioned(op: pj.Op, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inputs where a float32 evaluation can be expected within a few ulps of float64."""
    small = (np.abs(x) < 1e4) & (np.abs(y) < 1e4) & (np.abs(x) > 1e-30) | (x == 0)
    if op.name in {"sin", "cos", "tan", "mod"}:
        small &= np.abs(x) < 100  # argument reduction / cancellation grow with |x|
    if op.name in {"sub", "add"}:
        small &= ~np.isclose(np.abs(x), np.abs(y))  # catastrophic cancellation
    return small
