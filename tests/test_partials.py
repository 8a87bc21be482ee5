"""The op table's partials rules, and the two evaluators that read them, against the oracle.

Every op's partials are checked against central differences of its own value rule
(float64 NumPy) at smooth points; the dual interpreter and the unrolled dual closure must
agree on random programs of every op; the documented conventions hold where derivatives
do not exist.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import prospero_jax as pj
from prospero_jax.evaluators.unroll import plan, run_steps
from prospero_jax.ir.ops import OPS
from tests.programs import examples, programs

DIFFERENTIABLE = [op for op in OPS if op.partials is not None]


@pytest.mark.parametrize("op", DIFFERENTIABLE, ids=lambda op: op.name)
def test_partials_match_central_differences(op: pj.Op) -> None:
    assert op.rule is not None
    assert op.partials is not None
    rng = np.random.default_rng(0)
    # Away from 0, where recip, ln and div are badly conditioned.
    a = rng.uniform(0.1, 0.9, 200) * rng.choice([-1, 1], 200)
    b = rng.uniform(0.3, 2.0, 200) * rng.choice([-1, 1], 200)
    if op.name in ("ln", "sqrt"):
        a = np.abs(a) + 0.1
    args = [a, b][: op.arity]
    out = op.rule(np, *args)
    partials = op.partials(np, out, *args)
    assert len(partials) == op.arity
    h = 1e-6
    for k in range(op.arity):
        up = [v + h * (i == k) for i, v in enumerate(args)]
        down = [v - h * (i == k) for i, v in enumerate(args)]
        numeric = (op.rule(np, *up) - op.rule(np, *down)) / (2 * h)
        fine = (op.rule(np, *[v + h / 10 * (i == k) for i, v in enumerate(args)]) - out) / (h / 10)
        smooth = np.abs(numeric - fine) < 1e-3 * np.maximum(1, np.abs(numeric))  # no jump here
        assert smooth.mean() > 0.8, op.name
        np.testing.assert_allclose(partials[k][smooth], numeric[smooth], rtol=1e-6, atol=1e-8)


def field_and_gradient(
    program: pj.Program, derivatives: str, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, ...]:
    f = pj.to_function(program, derivatives=derivatives)
    grad = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1))))
    value, (gx, gy) = grad(jnp.asarray(x), jnp.asarray(y))
    return np.asarray(value), np.asarray(gx), np.asarray(gy)


@settings(max_examples=examples(30), deadline=None)
@given(programs(max_size=30))
def test_interpreter_and_unrolled_derivatives_agree(program: pj.Program) -> None:
    x, y = np.random.default_rng(4).uniform(-1.5, 1.5, size=(2, 16))
    with jax.enable_x64(True):
        unrolled = field_and_gradient(program, "unrolled", x, y)
        interpreted = field_and_gradient(program, "interpreter", x, y)
    # Compared where every value on the way is finite. Elsewhere derivatives are
    # unspecified: a zero partial (e.g. of `and` in its first argument) times an infinite
    # or NaN one gives NaN in one evaluator, and 0 where JAX drops the zero path of the
    # unrolled derivative. And values may differ too: XLA simplifies the fused closure
    # algebraically (`ln(exp(t))` becomes `t`, finite where exp overflows), not the
    # interpreter, which computes what the oracle does.
    finite = all_values_finite(program, x, y)
    # The two run the same rules, but XLA's transcendental functions differ by a few ulps
    # between its fused and its interpreted code: they agree up to what a few ulps in
    # every op make of the result, which an ill-conditioned program (tan near a pole,
    # mod of a large quotient) amplifies. That is measured on the float64 oracle.
    slack = sensitivity(program, x, y)
    finite &= np.isfinite(slack).all(axis=0)
    for u, i, d in zip(unrolled, interpreted, slack, strict=True):
        # atol: a derivative that cancels to 0 in one evaluator may be 1e-17 in the other
        # (XLA fuses multiply-adds differently in the two).
        with np.errstate(invalid="ignore"):  # inf - inf: equal infinities agree
            close = (i == u) | (np.abs(i - u) <= 1e-12 + 1e-12 * np.abs(u) + 4 * d)
        assert np.all(close[finite]), (i[finite], u[finite])


#: How far each op's result is moved to measure a program's conditioning: 16 ulps.
ULPS = 16 * np.finfo(np.float64).eps


def sensitivity(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(3, n)``: how far the value and its x and y derivatives (float64, forward mode
    through the op table's partials) move when every op's result, and the inputs, are
    moved by :data:`ULPS` relatively in random directions (the largest of 4 tries)."""
    steps = plan(program, "dual")
    rng = np.random.default_rng(0)

    def run(seed_x: float, seed_y: float, moved: bool) -> tuple[np.ndarray, np.ndarray]:
        def seal(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            if not moved:
                return pair
            shift = 1 + ULPS * rng.choice([-1.0, 1.0], size=x.shape)
            return pair[0] * shift, pair[1] * shift

        zero = np.zeros_like(x)
        inputs = ((x, zero + seed_x), (y, zero + seed_y), (zero, zero))
        const = lambda _, c: (np.float64(c), np.float64(0.0))  # noqa: E731
        out = run_steps(steps, 0, len(steps), {}, np, inputs, const, seal)
        value, tangent = out[len(steps) - 1]
        return np.broadcast_to(value, x.shape), np.broadcast_to(tangent, x.shape)

    with np.errstate(all="ignore"):
        (value, dx), (_, dy) = run(1, 0, False), run(0, 1, False)
        worst = np.zeros((3, len(x)))
        for _ in range(4):
            (v2, dx2), (_, dy2) = run(1, 0, True), run(0, 1, True)
            moved = np.abs(np.stack([v2 - value, dx2 - dx, dy2 - dy]))
            worst = np.maximum(worst, np.where(np.isnan(moved), np.inf, moved))
    return worst


def all_values_finite(program: pj.Program, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether every instruction's float64 value that is read is finite, at each point."""
    steps, values = plan(program), {}
    finite = np.ones(x.shape, bool)
    with np.errstate(all="ignore"):
        for i in range(len(steps)):
            inputs = (x, y, np.zeros_like(x))
            values = run_steps(steps, i, i + 1, values, np, inputs, lambda _, c: np.float64(c))
            if i in values:  # else nothing reads it
                finite &= np.isfinite(np.broadcast_to(values[i], x.shape))
    return finite


CONVENTIONS = [
    # (program, point, expected gradient): where the textbook derivative does not exist.
    ("x var-x\nr min x x", (0.3, 0.0), (1.0, 0.0)),
    ("x var-x\nn neg x\nr max x n", (0.0, 0.0), (0.0, 0.0)),  # |x| as a max: tie at 0
    ("x var-x\ny var-y\nq add x y\nr max q x", (0.5, 0.0), (1.0, 0.5)),  # tie: the mean
    ("x var-x\ny var-y\na square x\nb square y\ns add a b\nr sqrt s", (0.0, 0.0), (0.0, 0.0)),
    ("x var-x\nr abs x", (0.0, 0.0), (0.0, 0.0)),
    ("x var-x\nr asin x", (1.0, 0.0), (0.0, 0.0)),
    ("x var-x\ny var-y\nr atan2 y x", (0.0, 0.0), (0.0, 0.0)),
    ("x var-x\nr floor x", (2.0, 0.0), (0.0, 0.0)),
]


@pytest.mark.parametrize("derivatives", ["unrolled", "interpreter"])
@pytest.mark.parametrize(("text", "point", "expected"), CONVENTIONS)
def test_derivative_conventions_are_finite(
    text: str, point: tuple[float, float], expected: tuple[float, float], derivatives: str
) -> None:
    program = pj.parse(text)
    f = pj.to_function(program, simplify=False, derivatives=derivatives)
    with jax.enable_x64(True):
        forward = jax.jacfwd(f, argnums=(0, 1))(*map(jnp.float64, point))
        reverse = jax.jacrev(f, argnums=(0, 1))(*map(jnp.float64, point))
    for got in (forward, reverse):
        np.testing.assert_allclose(np.array(got, dtype=float), expected, atol=1e-15)


def test_dual_interpreter_compiles_once_for_any_program_of_its_buckets(
    hi: pj.Program, quarter: pj.Program
) -> None:
    from prospero_jax.evaluators.scan import scan
    from prospero_jax.evaluators.tape import registers

    assert (registers(hi).registers, len(registers(hi).ops)) == (
        registers(quarter).registers,
        len(registers(quarter).ops),
    )
    x = jnp.linspace(-1, 1, 11)
    jax.jvp(pj.to_function(hi, derivatives="interpreter"), (x, x), (x, x))
    before = scan._cache_size()
    for program in (quarter, hi.with_constants(hi.constants * 0.5)):
        jax.jvp(pj.to_function(program, derivatives="interpreter"), (x, x), (x, x))
    assert scan._cache_size() == before
