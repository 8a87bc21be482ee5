"""The sign program (``pj.specialise``, what images draw by default) against the float64
oracle of the *original* program.

The contract: wherever the original's float64 value v has |v| ≥ 1e-5 the default image
agrees with the oracle's; the sign program in float64 has v's sign wherever float64
rounding cannot decide it (|v| ≥ 1e-9); culled and brute force draw the same specialised
program bit for bit; ``exact=True`` draws the original op by op (``test_exactness.py``);
values and derivatives come from the original.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import prospero_jax as pj
from prospero_jax.ir.ops import OPCODE, PARAMS
from tests.conftest import shared_path
from tests.programs import examples, specialisable

SIZE = 48
#: Where float32 rounding may decide a pixel (the contract's threshold).
DECIDED = 1e-5


def same_rows(a: pj.Program, b: pj.Program) -> bool:
    return all(
        np.array_equal(getattr(a, f), getattr(b, f))
        for f in ("opcodes", "args", "consts", "params")
    )


def assert_signs(program: pj.Program, size: int, z: float = 0.0, brute: bool = True) -> None:
    """The sign program in float64 has the original's sign wherever rounding does not
    decide it; the default images (culling draws the sign program, brute force the
    original) agree with the oracle where |value| ≥ 1e-5; specialising is idempotent, so
    culled and brute force images of the sign program agree bit for bit."""
    sign = pj.specialise(program)
    assert same_rows(pj.specialise(sign), sign)
    truth = pj.reference.values(program, size, z=z)
    ours = pj.reference.values(sign, size, z=z)
    decided = np.abs(truth) >= 1e-9
    assert np.array_equal(np.sign(ours[decided]), np.sign(truth[decided]))
    expected = pj.reference.to_pixels(truth)
    culled = pj.render(program, size, mode="culled", z=z)
    assert np.array_equal(culled, pj.render(sign, size, mode="culled", z=z))
    modes = {"culled": culled}
    if brute:
        modes["brute"] = pj.render(program, size, mode="brute", z=z)
        assert np.array_equal(culled, pj.render(sign, size, mode="brute", z=z))
    for mode, image in modes.items():
        wrong = (image != expected) & (np.abs(truth) >= DECIDED)
        assert not wrong.any(), (mode, np.abs(truth[wrong]).min())


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specialisable())
def test_random_shapes_keep_their_sign(program: pj.Program) -> None:
    assert_signs(program, SIZE)


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specialisable(solid=True))
def test_random_solids_keep_their_sign_at_every_depth(program: pj.Program) -> None:
    for z in (-0.6, 0.0, 0.35):
        assert_signs(program, 32, z)


@pytest.mark.parametrize(
    "text",
    [
        "x var-x\nc const 0\nn neg c\nr recip n\ns add r x\n",  # recip(-0) = -inf
        "x var-x\ny var-y\nc const 0\nn neg c\nq recip c\nr recip n\nm min q r\ns add m x\n",
        "x var-x\nc const 0\nn neg c\nt atan2 n c\nu atan2 c n\nm sub t u\ns add m x\n",
        "x var-x\nc const 0\nn neg c\nm mul n c\nr recip m\ns add r x\n",  # 0·-0 = -0
        "x var-x\nc const 0\nn neg c\nm mul n n\nr recip m\ns sub x r\n",  # -0·-0 = 0
        "x var-x\ny var-y\nc const 0\nm mul c y\nr recip m\ns add r x\n",  # 0·y: -0 if y < 0
    ],
)
def test_signed_zero_constants_stay_apart(text: str) -> None:
    # A -0.0 constant (folded from `neg 0`) and a 0.0 one are different rows of the sign
    # program (they were merged as equal numbers: recip(-0) = -inf became +inf, and a
    # random solid's culled heightmap lost its whole surface).
    assert_signs(pj.parse(text), 16)


def test_the_rewrites_fire_on_what_they_are_for() -> None:
    """A circle, a square and their difference: every affine chain, every sqrt and every
    neg folds away; the sign program is a handful of atoms and min/max rows."""
    circle = pj.parse(
        "\n".join(
            [
                "x var-x",
                "y var-y",
                "a const 0.25",
                "dx sub x a",
                "dx2 square dx",
                "y2 mul y y",
                "s add dx2 y2",
                "r sqrt s",
                "half const 0.5",
                "c sub r half",
                "k const -2",
                "x2 mul x k",
                "p add x2 y",
                "np neg p",
                "m max c np",
                "out neg m",
            ]
        )
    )
    sign = pj.specialise(circle)
    names = [pj.OPS[code].name for code in sign.opcodes]
    assert sorted(names) == ["affine", "min", "quadric"]
    assert_signs(circle, 64)


@pytest.mark.parametrize("name", ["models/hi.vm", "models/quarter.vm"])
def test_shared_drawings_keep_their_sign(name: str) -> None:
    assert_signs(pj.load(shared_path(name)), 256)


@pytest.mark.slow
def test_prospero_keeps_its_sign(prospero: pj.Program) -> None:
    """As the other drawings, but culled only (brute force of prospero's sign program
    compiles for minutes; its default brute-force image is test_render.py's)."""
    assert_signs(prospero, 512, brute=False)


@pytest.mark.parametrize("name", ["bear", "colonnade", "tanglecube"])
def test_shared_solids_keep_their_sign_at_depth_slices(name: str) -> None:
    program = pj.load(shared_path(f"models/{name}.vm"))
    for z in (-0.5, 0.0, 0.4):
        assert_signs(program, 96, z)


def test_prospero_sign_program_is_a_third_of_the_rows_in_cheap_kinds(
    prospero: pj.Program,
) -> None:
    sign = pj.specialise(prospero)
    counts = {name: int(np.count_nonzero(sign.opcodes == OPCODE[name])) for name in OPCODE}
    assert len(sign) < 0.35 * len(prospero), len(sign)
    # Its letters' polygons are one row each: no half-plane is left on its own.
    assert counts["affine-max"] + counts["affine-min"] > 700, counts
    assert counts["affine"] == 0, counts
    assert counts["quadric"] > 300, counts
    # Every sqrt, neg and arithmetic op of prospero folds into an atom or a min/max.
    kept = ("affine-max", "affine-min", "quadric", "min", "max", "const", "var-x", "var-y")
    assert len(sign) == sum(counts[name] for name in kept)
    assert pj.specialise(prospero) is sign  # once per program


def test_exact_draws_the_original_op_by_op(prospero: pj.Program) -> None:
    """``exact=True`` is the op-by-op render (its own tests: test_exactness.py): here, it
    differs from the default exactly where only rounding decides."""
    exact = pj.render(prospero, 256, exact=True)
    default = pj.render(prospero, 256)
    truth = pj.reference.values(prospero, 256)
    differ = exact != default
    assert np.all(np.abs(truth[differ]) < DECIDED)


def test_values_and_derivatives_come_from_the_original() -> None:
    """sqrt(x² + y²) - 0.5 is a distance; its sign program x² + y² - 0.25 is not: the
    field, its gradient and the fitted constants are the original's."""
    circle = pj.parse(
        "x var-x\ny var-y\nx2 square x\ny2 square y\ns add x2 y2\nr sqrt s\nh const 0.5\nd sub r h"
    )
    f = pj.to_function(circle)
    point = jnp.array([0.6, 0.8])
    assert float(f(*point)) == pytest.approx(0.5)
    gradient = jax.grad(lambda p: f(p[0], p[1]))(point)
    np.testing.assert_allclose(np.asarray(gradient), [0.6, 0.8], rtol=1e-6)
    samples = pj.sample_gradient(circle, 64)
    near = samples.evaluated
    np.testing.assert_allclose(
        samples.value[near], pj.reference.values(circle, 64)[near], atol=1e-6
    )


@pytest.mark.parametrize("seed", range(40))
def test_atoms_round_alike_in_every_kernel(seed: int) -> None:
    """An atom whose products, rounded one by one, cancel exactly at a pixel: a fused
    multiply-add there would give ±1 ulp instead of 0 (and a pixel that depends on which
    product the compiler fused; XLA:CPU fuses in the culling kernels, seed 16 showed it).
    Every evaluator rounds each product on its own."""
    rng = np.random.default_rng(seed)
    xs, ys = pj.reference.axes(64)
    a, b = (float(v) for v in rng.uniform(-3, 3, 2))
    i, j = rng.integers(0, 64, 2)
    d = -(np.float32(a) * np.float32(xs[j]) + np.float32(b) * np.float32(ys[i]))
    numbers = [a, b, 0.0, float(d)]
    if seed % 2:  # the same cancellation inside a quadric's first term
        numbers = [1.5, *numbers, 1.0, b, a, 0.0, -0.2, 0, 0, 0, 0, 0, -1e-3]
    kind = "quadric" if seed % 2 else "affine"
    program = pj.parse(f"x var-x\ny var-y\nr {kind} {' '.join(map(repr, numbers))}")
    culled = pj.render(program, 64, mode="culled")
    assert np.array_equal(culled, pj.render(program, 64, mode="brute", exact=True))
    # and as NumPy does in float32, each step rounded
    p = np.zeros(PARAMS, np.float32)
    p[: len(numbers)] = numbers
    x, y = (v.astype(np.float32) for v in np.meshgrid(xs, ys))
    rule = pj.OPS[OPCODE[kind]].source
    assert rule is not None
    judged = rule(np, p, x, y, np.float32(0))
    assert np.array_equal(culled, pj.reference.to_pixels(judged))
