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
