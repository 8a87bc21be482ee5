"""Every evaluator computes each instruction as the op table says, wherever values are normal.

XLA's algebraic simplifier rewrites a fused closure with real-number identities that do
not hold in floating point: ``a / b`` as ``a * (1 / b)`` (the reciprocal of a number above
2**126 is subnormal and flushes to 0), ``(a + c1) + c2`` as ``a + (c1 + c2)``, ``(a / b) /
c`` as ``a / (b * c)`` (which overflows). The lowering seals each value from it
(:func:`prospero_jax.evaluators.lower.sealed`). These tests hold brute force, culling, the jitted
field (called the way users call it: broadcasting a row against a column) and the
interpreter to a float32 NumPy evaluation of the same tape, wherever every intermediate
value is a normal float32 number (or zero): bit for bit for the correctly rounded ops,
within a few ulps for the transcendental ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prospero_jax as pj
from prospero_jax.evaluators.scan import value_function
from prospero_jax.ir.ops import CONST, INPUTS, OPCODE, OPS
from prospero_jax.renderers.brute import jitted_kernel, render_tiles
from tests.programs import examples

TINY = np.finfo(np.float32).tiny
#: Ops whose float32 result is correctly rounded (or exact): held bit for bit.
ROUNDED = (
    "neg", "abs", "square", "sqrt", "recip", "floor", "ceil", "round", "not",
    "add", "sub", "mul", "div", "min", "max", "mod", "compare", "and", "or",
)  # fmt: skip
#: libm functions: XLA's and NumPy's differ by an ulp or two.
TRANSCENDENTAL = ("sin", "cos", "tan", "asin", "acos", "atan", "exp", "ln", "atan2")
ULPS = 4


def float32_values(program: pj.Program, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Every instruction's float32 value (IEEE, subnormals kept), by NumPy and the op table."""
    out: list[np.ndarray] = []
    shape = np.broadcast_shapes(x.shape, y.shape)
    inputs = {INPUTS[0]: x, INPUTS[1]: y, INPUTS[2]: np.zeros_like(x)}
    with np.errstate(all="ignore"):
        for code, (a, b), c in zip(program.opcodes, program.args, program.consts, strict=True):
            op = OPS[code]
            if code == CONST:
                value = np.float32(c)
            elif op.rule is None:
                value = inputs[int(code)]
            else:
                value = op.rule(np, *(out[i] for i in (a, b)[: op.arity]))
            out.append(np.broadcast_to(np.asarray(value, np.float32), shape))
    return out


def normal_everywhere(values: list[np.ndarray]) -> np.ndarray:
    """Points where every value is finite and either zero or at least the smallest normal."""
    ok = np.ones(values[0].shape, bool)
    for v in values:
        ok &= np.isfinite(v) & ((v == 0) | (np.abs(v) >= TINY))
    return ok


def ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 steps (+0 and -0 are 0 apart)."""

    def ordered(v: np.ndarray) -> np.ndarray:
        bits = v.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)

    return np.abs(ordered(a) - ordered(b))


def jitted_field(program: pj.Program, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The field under the caller's own ``jax.jit``, a row of x against a column of y."""
    f = pj.to_function(program, simplify=False)
    return np.asarray(jax.jit(lambda a, b: f(a[None, :], b[:, None]))(xs, ys))


def interpreted(program: pj.Program, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    x, y = np.meshgrid(xs, ys)
    evaluate = jax.jit(value_function(program))
    return np.asarray(evaluate(jnp.asarray(x), jnp.asarray(y), jnp.zeros_like(x)))


# The program: the true value is about -3.3e-3 everywhere, every value is normal,
# and the fused closure used to divide by 3e38 as a multiplication by 0.
HUGE_DIVISOR = """
x var-x
y var-y
k const -1e36
num add x k
big const 3e38
t max y big
d div num t
"""
# Rewrites of several instructions at once, each of which changed the image.
REWRITTEN = {
    "a / huge": HUGE_DIVISOR,
    "(a + c1) + c2": "x var-x\nc const 1e30\nd const -1e30\na add x c\nb add a d\nr sub b x",
    "(a * c1) * c2": "x var-x\nc const 1e-30\nk const 1e30\nm mul x k\na mul m c\nb mul a c\n"
    "h const 5e-31\nr sub b h",
    "(a / b) / c": "x var-x\nk const 1e30\nn add x k\na div n k\nq div a k\nh const 5e-31\n"
    "r sub q h",
    "a / (b / c)": "x var-x\nk const 1e20\nn add x k\nq div n k\nr div k q\nh const 5e19\n"
    "s sub h r",
    "a / exp(b)": "x var-x\nk const 1e30\nn add x k\nc const 88\ne exp c\nr div n e\n"
    "h const 1e-8\ns sub r h",
}


@pytest.mark.parametrize("name", REWRITTEN)
def test_rewritten_patterns_render_as_the_oracle(name: str) -> None:
    program = pj.parse(REWRITTEN[name], source=name)
    exact = pj.reference.render(program, 16)
    xs, ys = pj.reference.axes(16)
    field = jitted_field(program, xs.astype(np.float32), ys.astype(np.float32))
    assert np.array_equal(pj.reference.to_pixels(field), exact)
    for mode in ("brute", "culled"):
        assert np.array_equal(pj.render(program, 16, mode=mode, exact=True), exact), mode
    # Brute force off CPU: the closure unsealed, XLA's algebraic simplifier off instead
    # (brute.NO_REWRITES). Unsealed with it on, every one of these but the last two
    # renders wrong pixels (|value| up to 1).
    unsealed = render_tiles(jitted_kernel(program, False), pj.View(16), pj.Target())
    assert np.array_equal(unsealed, exact)


@pytest.mark.parametrize("signs", ["0 0", "0 -0", "-0 0", "-0 -0"])
def test_atan2_of_zeros_the_compiler_folds_is_the_oracles(signs: str) -> None:
    """``atan2(a, and(b, z))`` with ``a``, ``b`` signed zeros: the ``and`` is a zero the
    compiler folds, and XLA:CPU's folded ``atan2(0, 0)`` was NaN (the oracle: ±0 or ±π),
    so brute force lost the whole solid ``atan2(0, and(0, z)) + z`` that culling drew (a
    random heightmap test found it)."""
    a, b = signs.split()
    program = pj.parse(
        f"x var-x\ny var-y\nz var-z\na const {a}\nb const {b}\nc and b z\nt atan2 a c\nr add t z\n"
    )
    points = [np.float32([0.25] * 3), np.float32([0.5] * 3), np.float32([-0.5, 0.5, 2.0])]
    expected = pj.reference.evaluate(program, *(p.astype(np.float64) for p in points))
    got = np.asarray(jax.jit(pj.to_function(program))(*points))
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # float32 π + z: one rounding
    culled = pj.render_heightmap(program, 8, 6, mode="culled", normals=False)
    brute = pj.render_heightmap(program, 8, 6, mode="brute", normals=False)
    np.testing.assert_array_equal(culled.z, brute.z)


def extreme_normals(n: int, seed: int) -> np.ndarray:
    """``n`` float32 numbers of every magnitude from 1e-37 to 3e38, both signs."""
    rng = np.random.default_rng(seed)
    magnitude = 10.0 ** rng.uniform(-37, np.log10(3e38), n)
    return (magnitude * rng.choice([-1.0, 1.0], n)).astype(np.float32)


@pytest.mark.parametrize("op", [op for op in OPS if op.rule is not None], ids=lambda op: op.name)
def test_every_op_on_extreme_arguments(op: pj.Op) -> None:
    xs, ys = extreme_normals(64, 1), extreme_normals(64, 2)
    if op.name in ("asin", "acos"):
        xs = np.clip(xs, -1, 1)
    program = pj.parse(f"x var-x\ny var-y\nr {op.name} x{' y' if op.arity == 2 else ''}")
    values = float32_values(program, xs[None, :], ys[:, None])
    expected = values[-1]
    ok = normal_everywhere(values)
    if op.name == "mod":  # its fmod step may be subnormal where the result is not
        with np.errstate(all="ignore"):
            step = np.fmod(xs[None, :], np.abs(ys[:, None]))
        ok &= normal_everywhere([step])
    assert ok.mean() > 0.3
    tolerance = 0 if op.name in ROUNDED else ULPS
    for name, got in (
        ("jitted field", jitted_field(program, xs, ys)),
        ("interpreter", interpreted(program, xs, ys)),
    ):
        apart = ulps_apart(got[ok], expected[ok])
        assert apart.max() <= tolerance, f"{name}: {apart.max()} ulps"


@st.composite
def extreme_programs(draw: st.DrawFn, max_size: int = 24) -> pj.Program:
    """Programs of correctly rounded ops over x, y and constants of any normal magnitude.

    No ``add`` or ``sub`` reads a product directly: XLA:CPU contracts ``a * b + c`` into
    one fused multiply-add in the fused closure (one rounding instead of two; see the
    README's Correctness section), which no per-computation option turns off.
    """
    lines = ["_0 var-x", "_1 var-y"]
    products: set[int] = set()  # values that are a product, or minus one
    exponents = st.floats(-30, np.log10(3e38))
    for i in range(2, draw(st.integers(2, max_size)) + 2):
        if draw(st.integers(0, 3)) == 0:
            sign = draw(st.sampled_from([-1.0, 1.0]))
            lines.append(f"_{i} const {sign * 10 ** draw(exponents)!r}")
            continue
        name = draw(st.sampled_from(ROUNDED))
        pool = range(max(0, i - 6), i)
        if name in ("add", "sub"):
            pool = [j for j in pool if j not in products] or [0]
        args = [draw(st.sampled_from(pool)) for _ in range(OPS[OPCODE[name]].arity)]
        if name in ("mul", "square") or (name == "neg" and args[0] in products):
            products.add(i)
        lines.append(" ".join([f"_{i}", name, *(f"_{a}" for a in args)]))
    return pj.parse("\n".join(lines), source="<extreme>")


@settings(max_examples=examples(100), deadline=None)
@given(extreme_programs())
def test_random_programs_with_huge_and_tiny_constants(program: pj.Program) -> None:
    size = 24
    # What the renderers evaluate: the simplified tape (constants folded in float64).
    tape = pj.simplify(program)
    xs, ys = (v.astype(np.float32) for v in pj.reference.axes(size))
    values = float32_values(tape, xs[None, :], ys[:, None])
    ok = normal_everywhere(values)
    expected = values[-1]
    field = jitted_field(tape, xs, ys)
    assert np.array_equal(field[ok], expected[ok]), "jitted field"
    pixels = pj.reference.to_pixels(expected)
    for mode in ("brute", "culled"):
        image = pj.render(program, size, mode=mode, exact=True)
        assert np.array_equal(image[ok], pixels[ok]), mode


def shaped_and_baked(
    program: pj.Program, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The compiled field with the program's numbers baked in, and with them as an argument."""
    from prospero_jax.evaluators.lower import constant_array, to_shaped

    shaped = to_shaped(program)
    numbers = tuple(constant_array(v, np.float32) for v in shaped.numbers)
    baked = np.asarray(jax.jit(pj.to_function(program))(x, y, z))
    return baked, np.asarray(jax.jit(shaped.field)(numbers, x, y, z))


@settings(max_examples=examples(40), deadline=None)
@given(extreme_programs())
def test_a_fields_numbers_as_an_argument_change_no_bit(program: pj.Program) -> None:
    # The compiled leaf tier compiles a field once per shape and passes each program's
    # constants and atoms' numbers at run time: the same numbers as baked into the code.
    xs, ys = (v.astype(np.float32) for v in pj.reference.axes(24))
    x, y = np.meshgrid(xs, ys)
    baked, shaped = shaped_and_baked(program, x, y, np.zeros_like(x))
    np.testing.assert_array_equal(shaped, baked)


@pytest.mark.parametrize("model", ["bear", "colonnade", "tanglecube"])
def test_turned_sign_programs_share_one_shape_and_keep_their_bits(model: str) -> None:
    from prospero_jax.evaluators.lower import to_shaped
    from prospero_jax.renderers.render import drawn
    from tests.conftest import shared_path

    program = pj.load(shared_path(f"models/{model}.vm"))
    signs = [
        drawn(pj.View(8, rotation=pj.rotation(20 + 7 * i, -25 + 3 * i)).pose(program)[0],
              pj.Target(), True)
        for i in range(3)
    ]  # fmt: skip
    assert len({to_shaped(sign).key for sign in signs}) == 1
    assert len({sign.digest for sign in signs}) == 3
    points = np.random.default_rng(1).uniform(-3, 3, (3, 4096)).astype(np.float32)
    for sign in signs:
        baked, shaped = shaped_and_baked(sign, *points)
        np.testing.assert_array_equal(shaped, baked)
        assert np.any(baked < 0)
        assert np.any(baked > 0)
