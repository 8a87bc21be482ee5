"""The compile strategies (unrolled, chunked, interpreter, eager): one conformance suite.

Every strategy's tile function, run through the brute-force tile loop, must draw the float64
oracle's image (up to pixels whose value is within rounding of 0) on the shared models and
on random programs of every op (in float64); ``chunked`` with small chunks, so that values
cross many cuts, and ``live_after`` is checked against a direct count.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings

import prospero_jax as pj
from prospero_jax.benchmarks.strategies import STRATEGIES, _chunks, tile_kernel
from prospero_jax.evaluators.unroll import live_after, plan
from prospero_jax.ir.passes import last_uses
from prospero_jax.renderers.brute import render_tiles
from tests.programs import examples, programs

CPU = jax.devices("cpu")[0]
SIZE = 40


def _image(
    program: pj.Program, strategy: str, chunk: int = 5, dtype: str = "float32"
) -> np.ndarray:
    kernel = tile_kernel(program, strategy, chunk=chunk)
    function = jax.jit(kernel.function) if kernel.jit else kernel.function
    target = pj.Target(dtype, CPU)
    with target.precision():
        return render_tiles(function, pj.View(SIZE), target, tile=16)


def _check(program: pj.Program, image: np.ndarray) -> None:
    values = pj.reference.values(program, SIZE)
    truth = pj.reference.render(program, SIZE)
    differ = image != truth
    assert np.all(np.abs(values[differ]) < 1e-5), f"{differ.sum()} pixels differ"


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", ["hi", "quarter"])
def test_strategies_draw_the_oracles_image(
    strategy: str, model: str, request: pytest.FixtureRequest
) -> None:
    program = request.getfixturevalue(model)
    _check(program, _image(program, strategy))


@pytest.mark.parametrize("strategy", ["chunked", "interpreter"])
@settings(max_examples=examples(15), deadline=None)
@given(program=programs(max_size=30))
def test_strategies_on_random_programs(strategy: str, program: pj.Program) -> None:
    # In float64, as the oracle: random programs hit poles (`tan(atan(ln 0))` is -1.6e16 in
    # float64 and positive in float32), where float32 rounding flips a sign legitimately.
    with np.errstate(all="ignore"):
        _check(program, _image(program, strategy, chunk=3, dtype="float64"))


def test_chunked_is_one_jitted_piece_per_chunk(hi: pj.Program) -> None:
    steps = plan(pj.simplify(hi))
    assert len(_chunks(steps, 10)) == -(-len(steps) // 10) > 1
    assert len(_chunks(steps, len(steps))) == 1
    assert not tile_kernel(hi, "chunked", chunk=10).jit  # a host loop over the pieces


def test_live_after_matches_a_direct_count(quarter: pj.Program) -> None:
    frees = last_uses(quarter)
    steps = plan(quarter)
    stops = [1, 7, len(steps) // 2, len(steps)]
    for stop, alive in zip(stops, live_after(steps, stops), strict=True):
        freed = {j for i in range(stop) for j in frees[i]}
        assert alive == tuple(i for i in range(stop) if i not in freed)
    assert live_after(steps, [len(steps)])[-1] == (len(steps) - 1,)


def test_unknown_strategy_and_bad_chunk_are_value_errors(hi: pj.Program) -> None:
    with pytest.raises(ValueError, match="strategy must be one of"):
        tile_kernel(hi, "fused")
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        tile_kernel(hi, "chunked", chunk=0)
