"""Interval soundness: every opcode's interval holds every point value of its box."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prospero_jax as pj
from prospero_jax.evaluators.interval import Interval, to_interval_function
from prospero_jax.ir.ops import OPS
from tests.conftest import shared_path
from tests.programs import examples, programs
from tests.test_ops import program_for

VALUE_OPS = [op for op in OPS if op.rule is not None]
SAMPLES = 64

# No subnormal bounds, and subnormal point values compare as 0: XLA:CPU flushes subnormals
# to zero in arithmetic and comparisons but passes them through selects, so a point value
# can be a subnormal that an interval, computed by comparisons, calls zero. Only |values|
# < 1.2e-38 are affected.
bounds = st.one_of(
    st.floats(-4, 4, width=32, allow_subnormal=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e30, -1e30, np.inf, -np.inf]),
)


@st.composite
def boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    x0, x1, y0, y1 = (draw(bounds) for _ in range(4))
    return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)


@functools.cache
def compiled(program: pj.Program) -> tuple[Callable[..., Interval], Callable[..., jax.Array]]:
    return jax.jit(to_interval_function(program)), jax.jit(pj.to_function(program))


def check_contains(program: pj.Program, box: tuple[float, float, float, float]) -> None:
    """Sample points of ``box`` (its corners included) and check the float32 interval."""
    xlo, xhi, ylo, yhi = (np.float32(v) for v in box)
    g, f = compiled(program)
    lo, hi = (float(v) for v in g(Interval(xlo, xhi), Interval(ylo, yhi)))
    rng = np.random.default_rng(0)
    with np.errstate(all="ignore"):
        t = rng.uniform(0, 1, size=(2, SAMPLES)).astype(np.float32)
        xs = np.concatenate([[xlo, xlo, xhi, xhi], xlo + (xhi - xlo) * t[0]]).astype(np.float32)
        ys = np.concatenate([[ylo, yhi, ylo, yhi], ylo + (yhi - ylo) * t[1]]).astype(np.float32)
        xs = np.where(np.isfinite(xs), np.clip(xs, xlo, xhi), xlo).astype(np.float32)
        ys = np.where(np.isfinite(ys), np.clip(ys, ylo, yhi), ylo).astype(np.float32)
    values = np.asarray(f(xs, ys))
    if np.isnan(lo) or np.isnan(hi):
        return  # "unknown" is always sound
    assert not np.any(np.isnan(values)), f"NaN at a point but interval [{lo}, {hi}]"
    # Subnormal values are outside the guarantees (above): compare them as the zero that
    # XLA's comparisons take them for. Sample points between normal bounds can be subnormal.
    values = np.where(np.abs(values) < np.finfo(np.float32).tiny, np.float32(0), values)
    assert np.all((values >= lo) & (values <= hi)), (lo, hi, values.min(), values.max())


@pytest.mark.parametrize("op", VALUE_OPS, ids=lambda op: op.name)
@settings(max_examples=examples(60), deadline=None)
@given(box=boxes())
def test_every_opcode_interval_is_sound(op: pj.Op, box: tuple[float, float, float, float]) -> None:
    check_contains(program_for(op), box)


@settings(max_examples=examples(40), deadline=None)
@given(programs(max_size=15), boxes())
def test_random_program_intervals_are_sound(
    program: pj.Program, box: tuple[float, float, float, float]
) -> None:
    check_contains(program, box)


def test_intervals_are_tight_enough_to_decide(quarter: pj.Program) -> None:
    g = to_interval_function(quarter)
    inside = g(Interval(-0.4, -0.3), Interval(-0.4, -0.3))
    outside = g(Interval(0.5, 0.6), Interval(0.5, 0.6))
    assert float(inside.hi) < 0 < float(outside.lo)


def test_interval_function_is_a_pytree_function(hi: pj.Program) -> None:
    g = jax.jit(jax.vmap(to_interval_function(hi)))
    x = Interval(jnp.linspace(-1, 0.9, 8), jnp.linspace(-0.9, 1, 8))
    out = g(x, x)
    assert out.lo.shape == (8,)
    assert bool(jnp.all(out.lo <= out.hi))


# ---------------------------------------------------------------------------------------
# Rules that are tight where a crude one would be sound but useless: sin and cos (a crude
# [-1, 1] left every box of the bear's rotations ambiguous), exp's floor of 0 and
# division by a range that holds 0 (NaN there made the bear's whole far field unknown).


def _floats_between(lo: np.float32, count: int) -> np.ndarray:
    """``count`` consecutive float32 values from ``lo`` up."""
    out = [lo]
    for _ in range(count - 1):
        out.append(np.nextafter(out[-1], np.float32(np.inf)))
    return np.array(out, np.float32)


WAVES = [op for op in OPS if op.name in ("sin", "cos")]


@pytest.mark.parametrize("op", WAVES, ids=lambda op: op.name)
def test_waves_hold_every_float_near_crests_and_zeros(op: pj.Op) -> None:
    """Every float32 of boxes that end just before, at and just after a crest, a trough
    or a zero (``k π / 2`` up to the reach where the rule gives up), by XLA and by
    NumPy (the host tier's namespace): the interval holds every value XLA computes."""
    rng = np.random.default_rng(7)
    ks = np.concatenate([np.arange(-8, 9), rng.integers(-40_000, 40_000, 40)])
    rule = jax.jit(lambda lo, hi: op.interval(jnp, (lo, hi)))  # type: ignore[misc]
    value = jax.jit(getattr(jnp, op.name))
    for k in ks:
        centre = np.float32(k * np.pi / 2)
        for offset in (-40, -20, -3, 0):
            start = centre
            for _ in range(-offset):
                start = np.nextafter(start, np.float32(-np.inf))
            box = _floats_between(start, 24)
            values = np.asarray(value(box))
            for xp, (lo, hi) in (
                ("xla", rule(box[0], box[-1])),
                ("numpy", op.interval(np, (box[:1], box[-1:]))),  # type: ignore[misc]
            ):
                lo, hi = float(np.asarray(lo).item()), float(np.asarray(hi).item())
                assert lo <= values.min(), (xp, k, offset, lo, hi)
                assert values.max() <= hi, (xp, k, offset, lo, hi)


@pytest.mark.parametrize(
    ("name", "box", "within"),
    [
        ("sin", (0.1, 0.2), (0.0998, 0.1987)),  # increasing, no crest
        ("sin", (1.4, 1.7), (0.985, 1.0)),  # the crest at π/2
        ("cos", (3.0, 3.3), (-1.0, -0.987)),  # the trough at π
        ("cos", (2 * np.pi * 100 + 0.5, 2 * np.pi * 100 + 0.6), (0.824, 0.878)),
        ("sin", (-7.0, -6.0), (-0.657, 0.28)),  # crosses 0 at -2π, no extremum
    ],
)
def test_waves_are_tight(name: str, box: tuple[float, float], within: tuple[float, float]) -> None:
    op = next(o for o in OPS if o.name == name)
    lo, hi = op.interval(np, tuple(np.float32([v]) for v in box))  # type: ignore[misc]
    assert abs(float(lo[0]) - within[0]) < 2e-3
    assert abs(float(hi[0]) - within[1]) < 2e-3


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_waves_give_up_far_out_and_at_infinity() -> None:
    for op in WAVES:
        far = op.interval(np, (np.float32([1e6]), np.float32([1e6 + 1])))  # type: ignore[misc]
        assert float(far[0][0]) <= -1
        assert float(far[1][0]) >= 1
        wide = op.interval(np, (np.float32([0.0]), np.float32([7.0])))  # type: ignore[misc]
        assert float(wide[0][0]) <= -1
        assert float(wide[1][0]) >= 1
        lo, hi = op.interval(np, (np.float32([0.0]), np.float32([np.inf])))  # type: ignore[misc]
        assert np.isnan(lo[0])
        assert np.isnan(hi[0])


def test_exp_never_goes_below_zero_so_an_underflowed_blend_stays_known() -> None:
    """``-ln(exp(-k a) + exp(-k b)) / k`` far from both parts: both exps underflow to 0 in
    float32 and the blend is +inf at every point. Its interval must say so (a lower bound
    above 0), not NaN: a NaN interval keeps every box of the far field."""
    blend = pj.parse(
        "x var-x\ny var-y\nk const -30\na mul k x\nb mul k y\nea exp a\neb exp b\n"
        "s add ea eb\nl ln s\nn neg l\nc const 30\nr div n c\n"
    )
    box = (Interval(np.float32(5), np.float32(6)), Interval(np.float32(4), np.float32(5)))
    lo, hi = (float(v) for v in jax.jit(to_interval_function(blend))(*box))
    assert lo > 0
    assert not np.isnan(hi)
    check_contains(blend, (5.0, 6.0, 4.0, 5.0))
    exp = next(op for op in OPS if op.name == "exp")
    low, _ = exp.interval(np, (np.float32([-200.0]), np.float32([-150.0])))  # type: ignore[misc]
    assert float(low[0]) == 0.0


@pytest.mark.parametrize(
    ("program", "box", "expected"),
    [
        ("r recip x", (-1.0, 2.0), "everything"),
        ("c const 0.1\nr div c x", (-1.0, 2.0), "everything"),
        ("c const 0.1\nr div c x", (0.0, 2.0), "everything"),  # x may be -0: -inf
        ("r div y x", (-1.0, 2.0), "nan"),  # y holds 0 too: 0 / 0
        ("c const 0.1\nr div c x", (1.0, 2.0), "finite"),
    ],
)
def test_division_by_a_range_holding_zero_is_every_real_not_unknown(
    program: str, box: tuple[float, float], expected: str
) -> None:
    """1 / x and c / x over an x range holding 0 reach both infinities but are never NaN
    (a NaN interval would poison every row reading it, a ``max`` with a positive side
    included); 0 / 0 may be."""
    p = pj.parse(f"x var-x\ny var-y\n{program}\n")
    g = jax.jit(to_interval_function(p))
    ys = Interval(np.float32(-1), np.float32(1))
    lo, hi = (float(v) for v in g(Interval(np.float32(box[0]), np.float32(box[1])), ys))
    if expected == "nan":
        assert np.isnan(lo)
        assert np.isnan(hi)
    elif expected == "everything":
        assert (lo, hi) == (-np.inf, np.inf)
    else:
        assert np.isfinite(lo)
        assert np.isfinite(hi)
    check_contains(p, (*box, -1.0, 1.0))


def test_the_bears_far_field_is_decided() -> None:
    """Boxes far from the bear (8 pixels × 16 samples of a 512³ heightmap over ±1.5),
    which its blends' underflow and its rotations' sin/cos used to leave unknown: the
    sign program's float32 interval proves each outside. (The octree's leaf boxes at
    1024³: 63,437 before, 11,631 after; experiments/RESULTS.md.)"""
    from prospero_jax.evaluators.unroll import plan, run
    from prospero_jax.renderers.render import drawn

    sign = drawn(pj.load(shared_path("models/bear.vm")), pj.Target(), True)
    steps = plan(sign, "interval")
    xs = np.linspace(-1.5, 1.5, 512)
    zs = np.linspace(1, -1, 512)
    far = [(16, 72, 0), (448, 0, 272), (488, 496, 432), (24, 24, 368), (8, 288, 224)]
    for row, col, top in far:
        box = [
            tuple(np.float32(v) for v in pair)
            for pair in ((xs[col], xs[col + 7]), (-xs[row], -xs[row + 7]), (zs[top + 15], zs[top]))
        ]
        box[1] = (min(box[1]), max(box[1]))
        with np.errstate(all="ignore"):  # exp overflows, inf - inf in the widening
            lo, hi = run(steps, np, *box, lambda _, c: (np.float32(c), np.float32(c)))
        assert float(lo) > 0, (row, col, top, lo, hi)
