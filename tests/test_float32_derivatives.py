"""Derivatives that survive float32: finite wherever the value is and float64's is.

float32 overflows where float64 does not (the bear's smooth blends, ``exp(-30 a)``), and
a ``min`` that discards such a branch used to multiply its NaN derivative by 0. Held
here for every evaluator that returns derivatives (forward and reverse mode, unrolled
and interpreted), on random programs, on a sphere beside a far-away blend, and on what a
user sees of the bear: its float32 normals and its mesh's vertices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import prospero_jax as pj
from prospero_jax.evaluators.oracle import evaluate
from tests.conftest import shared_path
from tests.programs import examples, programs

#: A sphere of radius 0.5 at the origin, and a smooth blend ``-ln(exp(-k a) + exp(-k b))
#: / k`` of two spheres near (9, 0, 0): its exp terms underflow to 0 in float32 over the
#: unit cube, so the blend is +inf there, and the min returns the sphere.
FAR_BLEND = """
x var-x
y var-y
z var-z
x2 square x
y2 square y
z2 square z
r2 add x2 y2
s2 add r2 z2
s sqrt s2
half const 0.5
sphere sub s half
nine const 9
dx sub x nine
dx2 square dx
d2 add dx2 y2
e2 add d2 z2
e sqrt e2
a sub e half
one const 1
b sub e one
k const -30
ka mul k a
kb mul k b
ea exp ka
eb exp kb
sum add ea eb
log ln sum
negk const -30
blend div log negk
out min sphere blend
"""

EVALUATORS = ("unrolled", "interpreter")


def value_and_gradients(
    program: pj.Program, derivatives: str, points: np.ndarray, dtype: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values, reverse-mode and forward-mode gradients (∂x, ∂y, ∂z) at ``points``."""
    f = pj.to_function(program, derivatives=derivatives)
    x, y, z = (jnp.asarray(points[:, k], dtype) for k in range(3))
    value, reverse = jax.vmap(jax.value_and_grad(f, argnums=(0, 1, 2)))(x, y, z)
    forward = jax.vmap(jax.jacfwd(f, argnums=(0, 1, 2)))(x, y, z)
    return np.asarray(value), np.stack(reverse, -1), np.stack(forward, -1)


@pytest.mark.parametrize("derivatives", EVALUATORS)
def test_a_discarded_blend_that_underflows_leaves_the_spheres_normals(derivatives: str) -> None:
    program = pj.parse(FAR_BLEND)
    points = np.random.default_rng(1).normal(size=(64, 3))
    points = 0.5 * points / np.linalg.norm(points, axis=1, keepdims=True)  # on the sphere
    value, reverse, forward = value_and_gradients(program, derivatives, points, "float32")
    np.testing.assert_allclose(value, 0, atol=1e-6)
    for gradient in (reverse, forward):
        np.testing.assert_allclose(gradient, points / 0.5, atol=1e-5)


def test_the_far_blend_renders_finite_normals_in_float32() -> None:
    program = pj.parse(FAR_BLEND)
    heightmap = pj.render_heightmap(program, 32)
    surface = np.isfinite(heightmap.z)
    assert surface.sum() > 100
    assert heightmap.normal is not None
    assert np.isfinite(heightmap.normal[surface]).all()  # was NaN on every one
    samples = pj.sample_gradient(program, 32)
    assert samples.evaluated.sum() > 20
    assert np.isfinite(samples.gradient[samples.evaluated]).all()


@settings(max_examples=examples(30), deadline=None)
@given(programs(solid=True, max_size=24))
def test_float32_derivatives_are_finite_where_value_and_float64_derivative_are(
    program: pj.Program,
) -> None:
    points = np.random.default_rng(7).uniform(-1.5, 1.5, size=(24, 3))
    with jax.enable_x64(True):
        _, exact, _ = value_and_gradients(program, "unrolled", points, "float64")
    # Where float64's derivative is finite and float32 can hold it with room to spare
    # (a derivative beyond ~1e38 overflows on the way in float32, rightly).
    wanted = np.isfinite(exact).all(axis=1) & (np.abs(exact).max(axis=1) < 1e25)
    for derivatives in EVALUATORS:
        value, reverse, forward = value_and_gradients(program, derivatives, points, "float32")
        check = wanted & np.isfinite(value)
        for gradient in (reverse, forward):
            assert np.isfinite(gradient[check]).all(), (derivatives, program.to_vm())


@pytest.fixture(scope="module")
def bear() -> pj.Program:
    return pj.load(shared_path("models/bear.vm"))


def test_the_bears_float32_normals_are_float64s(bear: pj.Program) -> None:
    single = pj.render_heightmap(bear, 96)
    double = pj.render_heightmap(bear, 96, target=pj.Target(dtype="float64"))
    assert single.normal is not None
    assert double.normal is not None
    both = np.abs(single.z - double.z) < 1e-6  # the same sample (NaN: empty, False)
    assert both.sum() > 1000
    assert np.isfinite(double.normal[both]).all()
    assert np.isfinite(single.normal[both]).all()  # was NaN on 4.6 % of them
    # Unit length to the target's precision (made so in float32), the direction float64's
    # within 0.01°: the angle from the normalised dot product.
    assert single.normal.dtype == np.float32  # held in the target's dtype
    assert double.normal.dtype == np.float64
    unit = single.normal[both].astype(np.float64)  # measured in float64
    length = np.linalg.norm(unit, axis=1)
    np.testing.assert_allclose(length, 1.0, atol=1e-6)
    cosine = np.sum(unit * double.normal[both], axis=1) / length
    assert cosine.min() > np.cos(np.radians(0.01))


def test_the_bears_mesh_vertices_lie_on_its_surface(bear: pj.Program) -> None:
    m = pj.mesh(bear, 40)
    v = m.vertices
    residual = np.abs(evaluate(bear, v[:, 0], v[:, 1], v[:, 2]))
    assert residual.max() < 1e-4  # was 0.04, and 29 % of vertices above 1e-4


@settings(max_examples=examples(40), deadline=None)
@given(programs(solid=True, max_size=24))
def test_float32_derivatives_in_the_constants_are_finite_likewise(program: pj.Program) -> None:
    if len(program.constants) == 0:
        return
    points = np.random.default_rng(8).uniform(-1.5, 1.5, size=(16, 3))

    def per_point(derivatives: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        f, constants = pj.to_parametric(program, derivatives=derivatives)
        c = jnp.asarray(constants, dtype)
        x, y, z = (jnp.asarray(points[:, k], dtype) for k in range(3))
        value = f(c, x, y, z)
        gradient = jax.vmap(jax.grad(f), in_axes=(None, 0, 0, 0))(c, x, y, z)
        return np.asarray(value), np.asarray(gradient)

    with jax.enable_x64(True):
        _, exact = per_point("unrolled", "float64")
    wanted = np.isfinite(exact).all(axis=1) & (np.abs(exact).max(axis=1) < 1e25)
    for derivatives in EVALUATORS:
        value, gradient = per_point(derivatives, "float32")
        check = wanted & np.isfinite(value)
        assert np.isfinite(gradient[check]).all(), (derivatives, program.to_vm())
