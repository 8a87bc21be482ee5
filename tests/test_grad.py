"""Fields compose with jax.grad, vmap and jit; gradients match finite differences.

With respect to x and y (:func:`to_function`) and to the constants (:func:`to_parametric`),
on the shared models, on prospero (whose derivatives run in the dual interpreter) and on
random programs, in float64 against central differences of the float64 oracle.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings

import prospero_jax as pj
from prospero_jax.evaluators.unroll import plan, run_steps
from prospero_jax.ir.ops import OPS
from tests.programs import SMOOTH_OPS, examples, programs

H = 1e-6
TOL = 1e-5


def check_gradients(program: pj.Program, points: np.ndarray, derivatives: str = "auto") -> int:
    """Compare jax.grad with central differences at ``points`` (shape (k, 2)), float64.

    Points where the function is not smooth at scale H (a min/max switch or a kink within
    H, seen as central differences at H and H/10 disagreeing) are skipped; returns how
    many partial derivatives were compared.
    """
    with jax.enable_x64(True):
        f = pj.to_function(program, derivatives=derivatives)
        grad = jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1))))
        analytic = np.stack([np.asarray(g) for g in grad(*map(jnp.asarray, points.T))], axis=1)

    def central(h: float, axis: int) -> np.ndarray:
        step = h * np.eye(2)[axis]
        up = pj.reference.evaluate(program, *(points + step).T)
        down = pj.reference.evaluate(program, *(points - step).T)
        return np.asarray((up - down) / (2 * h))

    compared = 0
    for axis in (0, 1):
        coarse, fine = central(H, axis), central(H / 10, axis)
        scale = np.maximum(1.0, np.abs(coarse))
        smooth = np.isfinite(coarse) & (np.abs(coarse - fine) <= TOL * scale)
        error = np.abs(analytic[:, axis] - coarse)
        assert np.all(error[smooth] <= TOL * scale[smooth]), (
            axis,
            points[smooth][error[smooth] > TOL * scale[smooth]],
        )
        compared += int(smooth.sum())
    return compared


@pytest.mark.parametrize("derivatives", ["unrolled", "interpreter"])
@pytest.mark.parametrize("model", ["hi", "quarter"])
def test_gradient_matches_finite_differences_on_models(
    model: str, derivatives: str, request: pytest.FixtureRequest
) -> None:
    program = request.getfixturevalue(model)
    points = np.random.default_rng(1).uniform(-1, 1, size=(60, 2))
    assert check_gradients(program, points, derivatives) >= 100  # of 120 partial derivatives


def test_gradient_of_prospero_matches_finite_differences(prospero: pj.Program) -> None:
    points = np.random.default_rng(5).uniform(-1, 1, size=(40, 2))
    assert check_gradients(prospero, points) >= 70  # of 80 (its 7,591 rows: the interpreter)


@settings(max_examples=examples(25), deadline=None)
@given(programs(ops=SMOOTH_OPS, max_size=25))
def test_gradient_matches_finite_differences_on_random_programs(program: pj.Program) -> None:
    points = np.random.default_rng(2).uniform(-1, 1, size=(8, 2))
    assert check_gradients(program, points) >= 8  # of 16: kinks are rare on random points


def on_a_kink(program: pj.Program, points: np.ndarray) -> bool:
    """Whether a ``min``/``max`` ties, or an ``abs`` meets 0, at one of ``points`` (float64
    oracle, every row kept): where the derivative is a convention, not a slope."""
    steps = tuple(dataclasses.replace(step, frees=()) for step in plan(program))
    inputs = (points[:, 0], points[:, 1], np.zeros(len(points)))
    values = run_steps(steps, 0, len(steps), {}, np, inputs, lambda _, c: np.float64(c))
    for i, code in enumerate(program.opcodes.tolist()):
        args = [np.broadcast_to(values[a], len(points)) for a in program.args[i, : OPS[code].arity]]
        if OPS[code].name in ("min", "max") and np.any(args[0] == args[1]):
            return True
        if OPS[code].name == "abs" and np.any(args[0] == 0):
            return True
    return False


def directional_check(
    program: pj.Program, points: np.ndarray, derivatives: str, *, kinks: bool = False
) -> None:
    """d/dt loss(c + t d) by jax.grad and by central differences of the oracle, float64.

    ``kinks=True``: the program may sit on a kink (a random program's ``abs(0)`` or
    ``min`` tie), where the gradient is a convention, not a limit; the example is then
    rejected (hypothesis ``assume``) when the one-sided differences disagree, or when a
    tie sits at one of the points at all (:func:`on_a_kink`): a tie may be smooth along
    ``d`` alone (``min(-c₁, |c₂|)`` at 0 along a direction where ``-c₁`` stays below),
    where the convention's mean is still not the slope."""
    with jax.enable_x64(True):
        f, constants = pj.to_parametric(program, derivatives=derivatives)

        def loss(c: jax.Array) -> jax.Array:
            return jnp.sum(jnp.tanh(f(c, points[:, 0], points[:, 1])))

        grad = np.asarray(jax.jit(jax.grad(loss))(constants))
    c0 = program.constants
    direction = np.random.default_rng(6).normal(size=c0.shape)
    h = 1e-7

    def oracle_loss(c: np.ndarray) -> float:
        return float(np.sum(np.tanh(pj.reference.evaluate(program.with_constants(c), *points.T))))

    numeric = (oracle_loss(c0 + h * direction) - oracle_loss(c0 - h * direction)) / (2 * h)
    if kinks:
        ahead = (oracle_loss(c0 + h * direction) - oracle_loss(c0)) / h
        behind = (oracle_loss(c0) - oracle_loss(c0 - h * direction)) / h
        assume(abs(ahead - behind) <= 1e-3 * max(1.0, abs(numeric)))
        assume(not on_a_kink(program, points))
    assert abs(grad @ direction - numeric) <= 1e-5 * max(1.0, abs(numeric))


@pytest.mark.parametrize("derivatives", ["unrolled", "interpreter"])
@pytest.mark.parametrize("model", ["hi", "quarter"])
def test_gradient_with_respect_to_constants(
    model: str, derivatives: str, request: pytest.FixtureRequest
) -> None:
    program = request.getfixturevalue(model)
    points = np.random.default_rng(7).uniform(-1, 1, size=(50, 2))
    directional_check(program, points, derivatives)
    # and one constant at a time, against the oracle
    with jax.enable_x64(True):
        f, constants = pj.to_parametric(program, derivatives=derivatives)
        grad = np.asarray(jax.grad(lambda c: f(c, 0.25, -0.5))(constants))
    count = min(5, len(constants))
    for k in np.random.default_rng(8).choice(len(constants), size=count, replace=False):
        step = np.zeros(len(constants))
        step[k] = 1e-6
        up = pj.reference.evaluate(program.with_constants(program.constants + step), 0.25, -0.5)
        down = pj.reference.evaluate(program.with_constants(program.constants - step), 0.25, -0.5)
        assert abs(grad[k] - float(up - down) / 2e-6) <= 1e-5 * max(1.0, abs(grad[k]))


def test_gradient_of_prospero_with_respect_to_constants(prospero: pj.Program) -> None:
    points = np.random.default_rng(9).uniform(-1, 1, size=(32, 2))
    directional_check(prospero, points, "auto")


@settings(max_examples=examples(15), deadline=None)
@given(programs(ops=SMOOTH_OPS, max_size=25))
def test_gradient_with_respect_to_constants_on_random_programs(program: pj.Program) -> None:
    if len(program.constants) == 0:
        return
    points = np.random.default_rng(10).uniform(-1, 1, size=(8, 2))
    directional_check(program, points, "unrolled", kinks=True)
    directional_check(program, points, "interpreter", kinks=True)


def test_constants_round_trip_through_vm_text(quarter: pj.Program) -> None:
    _, constants = pj.to_parametric(quarter)
    assert quarter.with_constants(np.asarray(constants, np.float64)) == quarter
    fitted = quarter.constants * 1.5 + 0.125
    again = pj.parse(quarter.with_constants(fitted).to_vm())
    np.testing.assert_array_equal(again.constants, fitted)
    assert again.ids == quarter.ids
    with pytest.raises(ValueError, match=r"expected .* constants"):
        quarter.with_constants(fitted[:-1])
    with pytest.raises(ValueError, match="finite"):
        quarter.with_constants(np.full_like(fitted, np.inf))


def test_parametric_field_in_float32_and_float64(quarter: pj.Program) -> None:
    f, constants = pj.to_parametric(quarter)
    x, y = np.linspace(-1, 1, 7), np.linspace(1, -1, 7)
    assert f(constants, x.astype(np.float32), y.astype(np.float32)).dtype == jnp.float32
    np.testing.assert_allclose(
        f(constants, x, y), pj.reference.evaluate(quarter, x, y), rtol=1e-5, atol=1e-6
    )
    with jax.enable_x64(True):
        f64, c64 = pj.to_parametric(quarter)
        assert c64.dtype == jnp.float64
        np.testing.assert_array_equal(f64(c64, x, y), pj.reference.evaluate(quarter, x, y))
        with pytest.raises(ValueError, match=r"expected .* constants"):
            f64(c64[:-1], x, y)


def test_jvp_jacfwd_and_jacrev_agree(quarter: pj.Program) -> None:
    with jax.enable_x64(True):
        f, constants = pj.to_parametric(quarter, derivatives="interpreter")
        point = (jnp.float64(0.3), jnp.float64(-0.2))
        forward = jax.jacfwd(f, argnums=(0, 1, 2))(constants, *point)
        reverse = jax.jacrev(f, argnums=(0, 1, 2))(constants, *point)
        _, tangent = jax.jvp(lambda x: f(constants, x, point[1]), (point[0],), (jnp.float64(1),))
    for a, b in zip(forward, reverse, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(tangent, forward[1], rtol=1e-12)


def test_parametric_field_traces_once_per_shape(quarter: pj.Program) -> None:
    f, constants = pj.to_parametric(quarter, derivatives="interpreter")
    traces = 0

    def loss(c: jax.Array, x: jax.Array) -> jax.Array:
        nonlocal traces
        traces += 1
        return jnp.sum(f(c, x, x))

    step = jax.jit(jax.grad(loss))
    for scale in (1.0, 2.0, 3.0):
        step(constants * scale, jnp.zeros(4))
    step(constants, jnp.zeros(9))
    assert traces == 2


def test_vmap_and_jit_agree_with_the_oracle(hi: pj.Program) -> None:
    points = np.random.default_rng(3).uniform(-1, 1, size=(2, 100))
    with jax.enable_x64(True):
        f = pj.to_function(hi)
        batched = np.asarray(jax.jit(jax.vmap(f))(*points))
        one_by_one = np.array([float(f(x, y)) for x, y in points.T])
    expected = pj.reference.evaluate(hi, *points)
    np.testing.assert_allclose(batched, expected, rtol=1e-14)
    np.testing.assert_allclose(one_by_one, expected, rtol=1e-14)


def test_field_traces_once_per_shape(quarter: pj.Program) -> None:
    f = pj.to_function(quarter)
    traces = 0

    def counted(x: jax.Array, y: jax.Array) -> jax.Array:
        nonlocal traces
        traces += 1
        return f(x, y)

    jitted = jax.jit(counted)
    for _ in range(3):
        jitted(jnp.zeros(5), jnp.ones(5))
    jitted(jnp.zeros(7), jnp.ones(7))
    assert traces == 2


def test_scalars_integers_and_broadcasting(quarter: pj.Program) -> None:
    f = pj.to_function(quarter)
    assert f(0, 0).dtype == jnp.float32
    assert f(jnp.zeros((3, 1)), jnp.zeros((1, 4))).shape == (3, 4)
    constant = pj.to_function(pj.parse("c const 2"))
    assert constant(jnp.zeros(3), 0.0).shape == (3,)
