"""The lowered closure composes with jax.grad, vmap and jit; gradients match finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import prospero_jax as pj
from tests.programs import SMOOTH_OPS, programs

H = 1e-6
TOL = 1e-5


def check_gradients(program: pj.Program, points: np.ndarray) -> int:
    """Compare jax.grad with central differences at ``points`` (shape (k, 2)), float64.

    Points where the function is not smooth at scale H (a min/max switch or a kink within
    H, seen as central differences at H and H/10 disagreeing) are skipped; returns how
    many points were compared.
    """
    with jax.enable_x64(True):
        f = pj.to_function(program)
        grad = jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1))))
        gx, gy = (np.asarray(g) for g in grad(jnp.asarray(points[:, 0]), jnp.asarray(points[:, 1])))
    compared = 0
    for (x, y), analytic in zip(points, np.stack([gx, gy], axis=1), strict=True):
        for axis in (0, 1):
            step = np.eye(2)[axis]

            def central(h: float, x: float = x, y: float = y, step: np.ndarray = step) -> float:
                hi = pj.reference.evaluate(program, *(np.array([x, y]) + h * step))
                lo = pj.reference.evaluate(program, *(np.array([x, y]) - h * step))
                return float((hi - lo) / (2 * h))

            coarse, fine = central(H), central(H / 10)
            scale = max(1.0, abs(coarse))
            if not np.isfinite(coarse) or abs(coarse - fine) > TOL * scale:
                continue  # not differentiable here (at this resolution)
            assert abs(analytic[axis] - coarse) <= TOL * scale, (x, y, axis, analytic, coarse)
            compared += 1
    return compared


@pytest.mark.parametrize("model", ["hi", "quarter"])
def test_gradient_matches_finite_differences_on_models(
    model: str, request: pytest.FixtureRequest
) -> None:
    program = request.getfixturevalue(model)
    points = np.random.default_rng(1).uniform(-1, 1, size=(60, 2))
    assert check_gradients(program, points) >= 100  # of 120 partial derivatives


@settings(max_examples=25, deadline=None)
@given(programs(ops=SMOOTH_OPS, max_size=25))
def test_gradient_matches_finite_differences_on_random_programs(program: pj.Program) -> None:
    points = np.random.default_rng(2).uniform(-1, 1, size=(8, 2))
    assert check_gradients(program, points) >= 8  # of 16: kinks are rare on random points


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
