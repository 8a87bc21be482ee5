"""The culled renderer: same images as brute force, sound pruning, no per-program compiles."""

from __future__ import annotations

import itertools
from typing import Any

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prospero_jax as pj
from prospero_jax.evaluators.cull import prune_kernel
from prospero_jax.evaluators.leaf_kernels import leaf_kernel
from prospero_jax.renderers.culled import prune
from prospero_jax.runtime import executables as _executables
from tests.conftest import shared_path
from tests.programs import examples, programs

# Ops whose float32 results XLA:CPU computes the same way in the interpreter and in the
# fused closure. Its transcendental functions differ by a few ulps between vectorized and
# scalar code, and its fused float32 division is not correctly rounded (x / -x gave
# -0.99999994), so div, recip and those can flip a pixel whose value is within a few ulps
# of 0; the float64 test below covers them.
EXACT_OPS = (
    "neg", "abs", "square", "sqrt", "floor", "ceil", "round", "not",
    "add", "sub", "mul", "min", "max", "mod", "compare", "and", "or",
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_culled_equals_brute_on_prospero(prospero: pj.Program, dtype: str) -> None:
    size = 1024 if dtype == "float32" else 512
    brute = pj.render(prospero, size, mode="brute", dtype=dtype)
    culled = pj.render(prospero, size, mode="culled", dtype=dtype)
    assert np.count_nonzero(brute != culled) == 0


@pytest.mark.slow
def test_culled_matches_the_oracle(
    prospero: pj.Program, oracle_values: dict[int, np.ndarray]
) -> None:
    for size in (256, 1024):
        expected = pj.reference.to_pixels(oracle_values[size])
        assert np.count_nonzero(pj.render(prospero, size, mode="culled") != expected) == 0


@pytest.mark.parametrize("size", [1, 7, 33, 200])
def test_culled_equals_brute_at_odd_sizes_and_regions(size: int, hi: pj.Program) -> None:
    for region in [(-1.0, 1.0, -1.0, 1.0), (0.3, 0.9, 0.1, 0.7)]:
        brute = pj.render(hi, size, mode="brute", region=region)
        assert np.array_equal(pj.render(hi, size, mode="culled", region=region), brute)


@settings(max_examples=examples(30), deadline=None)
@given(programs(ops=EXACT_OPS, max_size=30), st.sampled_from([16, 64, 100]))
def test_culled_equals_brute_on_random_programs(program: pj.Program, size: int) -> None:
    brute = pj.render(program, size, mode="brute")
    assert np.array_equal(pj.render(program, size, mode="culled"), brute)


@settings(max_examples=examples(30), deadline=None)
@given(programs(max_size=30))
def test_culled_equals_brute_on_random_programs_with_every_op_in_float64(
    program: pj.Program,
) -> None:
    # XLA's transcendental functions differ by a few ulps between its fused closure and the
    # interpreter, so a pixel whose value is 0 in exact arithmetic may come out -1e-16 in
    # one and -0 in the other (-(atan(y) + atan(x)) on the diagonal y = -x): the two agree
    # wherever the float64 oracle's value is not within rounding of 0.
    brute = pj.render(program, 48, mode="brute", dtype="float64")
    culled = pj.render(program, 48, mode="culled", dtype="float64")
    decided = np.abs(pj.reference.values(program, 48)) >= 1e-9
    assert np.array_equal(culled[decided], brute[decided])


@st.composite
def boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    x0, y0 = draw(st.floats(-1, 0.9)), draw(st.floats(-1, 0.9))
    w = draw(st.floats(0.001, 1.0))
    return x0, x0 + w, y0, y0 + w


@settings(max_examples=examples(40), deadline=None)
@given(programs(max_size=40), boxes())
def test_pruned_tape_has_the_full_tapes_sign_in_its_box(
    program: pj.Program, box: tuple[float, float, float, float]
) -> None:
    lo, hi, pruned = prune(program, box)
    xs = np.linspace(box[0], box[1], 9, dtype=np.float32)
    ys = np.linspace(box[2], box[3], 9, dtype=np.float32)
    full = np.asarray(jax.jit(pj.to_function(program))(xs[None, :], ys[:, None]))
    # Subnormal values' signs are left out, as the op conformance suite leaves them out
    # (a box whose lower bound is -1.4e-45 had ``mod y x`` proved >= 0 while the jitted
    # closure gave -1.4e-45 on its edge: seed 100, PROSPERO_EXAMPLES=10).
    normal = ~((full != 0) & (np.abs(full) < np.finfo(np.float32).tiny))
    if pruned is None:  # decided: the whole box is on one side
        assert (hi < 0 and np.all(full[normal] < 0)) or (lo >= 0 and np.all(full[normal] >= 0))
        return
    assert len(pruned) <= len(pj.simplify(program))
    kept = np.asarray(jax.jit(pj.to_function(pruned, simplify=False))(xs[None, :], ys[:, None]))
    # Pruning keeps the test "value < 0" exact; values may differ where only the sign of
    # a min/max argument mattered (its other argument was dropped).
    np.testing.assert_array_equal(kept[normal] < 0, full[normal] < 0)


@settings(max_examples=examples(20), deadline=None)
@given(programs(max_size=40), boxes())
def test_intervals_alone_prove_what_pruning_proves(
    program: pj.Program, box: tuple[float, float, float, float]
) -> None:
    # prune=False (a heightmap's last level above compiled leaves) runs the forward pass
    # only: the same intervals and verdicts per child, no tapes.
    from prospero_jax.renderers.hierarchy import prune_level, root_tape

    tapes = root_tape(program, "float32")
    x0, x1, y0, y1 = box
    xs, ys = np.linspace(x0, x1, 5), np.linspace(y0, y1, 5)
    children = [(xs[i], xs[i + 1], ys[j], ys[j + 1], 0, 0) for j in range(4) for i in range(4)]
    boxes = np.array(children, np.float32).T[None]  # (1 parent, 6, 16 children)
    lengths = np.array([len(tapes)])
    device = jax.devices("cpu")[0]
    full = prune_level(tapes, lengths, boxes, device, len(tapes))
    alone = prune_level(tapes, lengths, boxes, device, len(tapes), prune=False)
    for name in ("lo", "hi", "inside"):
        np.testing.assert_array_equal(getattr(alone, name), getattr(full, name))
    np.testing.assert_array_equal(alone.kept, (full.kept > 0).astype(alone.kept.dtype))
    assert not len(alone.emit)


def test_pruning_shortens_prospero_near_its_outline(prospero: pj.Program) -> None:
    _, _, pruned = prune(prospero, (-0.5, -0.45, 0.3, 0.35))
    assert pruned is not None
    assert len(pruned) < 0.05 * len(prospero)


def test_kernels_compile_independently_of_the_program(
    prospero: pj.Program, hi: pj.Program, quarter: pj.Program
) -> None:
    # Compile the register-file buckets: prospero's tapes need 1024 and 4096 rows, hi's 1024,
    # each with 4 and 16 lanes (64 and 128 px: one 2 × 2 or 4 × 4 level). On the kernels
    # throughout: under tier="auto" a process's first frames go to the host tier for as
    # long as the kernels' price (stored or missing) says, so which render first readies
    # them depends on what ran before.
    for program, size in ((prospero, 64), (prospero, 300), (hi, 64), (hi, 128)):
        pj.render(program, size, mode="culled", tier="kernels")
    compiled = _compilations()
    assert sum(compiled) >= 3  # prune (one register bucket per program) + leaves
    for program in (prospero, hi, quarter, pj.shapes.demo_program()):
        for size in (64, 128, 1000):
            pj.render(program, size, mode="culled", tier="kernels")
    # Other programs, tiles, levels and sizes reuse those compilations.
    assert _compilations() == compiled


def _compilations() -> tuple[int, int]:
    """Kernels compiled or loaded: by jit, and as stored executables (the suite's cache)."""
    return prune_kernel._cache_size() + leaf_kernel._cache_size(), len(_executables.store.loaded)


@pytest.mark.parametrize("model", ["bear", "colonnade", "tanglecube"])
def test_3d_models_with_every_kind_of_op_match_the_oracle(model: str) -> None:
    program = pj.load(shared_path(f"models/{model}.vm"))  # bear: abs, cos, div, exp, ln, sin
    for z in (0.0, 0.3):
        values = pj.reference.values(program, 128, region=(-1.5, 1.5, -1.5, 1.5), z=z)
        for mode in ("brute", "culled"):
            image = pj.render(program, 128, region=(-1.5, 1.5, -1.5, 1.5), z=z, mode=mode)
            differ = image != pj.reference.to_pixels(values)
            assert np.all(np.abs(values[differ]) < 1e-4), (mode, z)


def test_sign_tests_pass_through_neg_min_and_max() -> None:
    # value < 0 iff max(x - 0.5, y) > 0. On x in [-0.2, 0.4], x - 0.5 is never > 0, so only
    # y decides, though the two intervals overlap and the max cannot be decided by them.
    program = pj.parse("x var-x\ny var-y\nh const 0.5\na sub x h\nm max a y\nr neg m")
    _, _, pruned = prune(program, (-0.2, 0.4, -0.5, 0.5))
    assert pruned is not None
    assert [pj.OPS[c].name for c in pruned.opcodes] == ["var-y", "neg"]
    # Where the value itself is needed (here by mul), nothing is dropped.
    scaled = pj.parse("x var-x\ny var-y\nh const 0.5\na sub x h\nm max a y\nr mul m m")
    _, _, kept = prune(scaled, (-0.2, 0.4, -0.5, 0.5))
    assert kept is not None
    assert "sub" in [pj.OPS[c].name for c in kept.opcodes]


def test_a_min_decided_for_its_constant_becomes_that_constant() -> None:
    # On x in [0.6, 0.9], min(x, 0.5) is always the constant 0.5 (an immediate operand of
    # the min row in the tape), so the pruned program no longer reads x.
    program = pj.parse("x var-x\ny var-y\nh const 0.5\nm min x h\nr sub m y")
    lo, hi, pruned = prune(program, (0.6, 0.9, 0.0, 1.0))
    assert (lo, hi) == (-0.5, 0.5)
    assert pruned is not None
    names = [pj.OPS[c].name for c in pruned.opcodes]
    assert "var-x" not in names
    assert "min" not in names
    x, y = np.meshgrid(np.linspace(0.6, 0.9, 7), np.linspace(0.0, 1.0, 7))
    expected = pj.reference.evaluate(program, x, y)
    assert np.array_equal(pj.reference.evaluate(pruned, x, y), expected)
    image = pj.render(program, 64, region=(0.6, 0.9, 0.0, 1.0), mode="culled")
    assert np.array_equal(image, pj.render(program, 64, region=(0.6, 0.9, 0.0, 1.0)))


@pytest.mark.parametrize(
    ("side", "tile", "dtype"), [(256, 32, np.uint8), (128, 64, np.float32), (64, 8, np.int16)]
)
def test_painting_tiles_by_rows_equals_painting_them_pixel_by_pixel(
    side: int, tile: int, dtype: type
) -> None:
    """paint_tiles moves a square's rows as whole elements: the same image as NumPy's
    pixel-by-pixel indexed assignment, for blocks and for a scalar, on any pixel type."""
    from prospero_jax.renderers.tile_grid import as_tiles, paint_tiles

    rng = np.random.default_rng(side)
    grid = side // tile
    cells = rng.choice(grid * grid, grid * grid // 3, replace=False)
    rows, cols = cells // grid * tile, cells % grid * tile
    blocks = (rng.random((len(cells), tile, tile)) * 100).astype(dtype)
    painted, expected = np.zeros((side, side), dtype), np.zeros((side, side), dtype)
    paint_tiles(painted, tile, rows, cols, blocks)
    as_tiles(expected, tile)[rows // tile, :, cols // tile, :] = blocks
    paint_tiles(painted, tile, rows[:3], cols[:3], 7)
    as_tiles(expected, tile)[rows[:3] // tile, :, cols[:3] // tile, :] = 7
    # One row per square, repeated down it (a plane's normals).
    last = slice(-min(2, len(rows)), None)
    line = (rng.random((len(rows[last]), 1, tile)) * 100).astype(dtype)
    paint_tiles(painted, tile, rows[last], cols[last], line)
    as_tiles(expected, tile)[rows[last] // tile, :, cols[last] // tile, :] = line
    np.testing.assert_array_equal(painted, expected)
    assert (painted != 0).any()


def test_painting_tiles_of_pixels_that_hold_several_numbers() -> None:
    # A heightmap's normal image is painted as an image whose pixels are its three numbers
    # (a void of three floats): the same image as assigning through a tiled view.
    from prospero_jax.renderers.tile_grid import paint_tiles

    rng = np.random.default_rng(3)
    side, tile, across = 48, 16, 3
    normal, expected = np.zeros((side, side, 3), np.float32), np.zeros((side, side, 3), np.float32)
    pixel = np.dtype((np.void, 3 * normal.itemsize))
    image = normal.view(pixel).reshape(side, side)
    cells = np.array([0, 4, 5, 8])
    rows, cols = np.divmod(cells, across)
    unit = rng.normal(size=(len(cells), tile * tile, 3)).astype(np.float32)
    paint_tiles(image, tile, rows * tile, cols * tile, unit.view(pixel).reshape(-1, tile, tile))
    nan = np.full(3, np.nan, np.float32).view(pixel)[0]
    paint_tiles(image, tile, np.array([1, 2]) * tile, np.array([0, 1]) * tile, nan)
    tiles = expected.reshape(across, tile, across, tile, 3).transpose(0, 2, 1, 3, 4)
    tiles[rows, cols] = unit.reshape(-1, tile, tile, 3)
    tiles[[1, 2], [0, 1]] = np.nan
    np.testing.assert_array_equal(normal, expected)


@pytest.mark.parametrize(
    ("shape", "tile"), [((64, 64), 8), ((5, 32, 32), 8), ((7, 8, 8), 8), ((16, 16), 1)]
)
def test_each_squares_largest_value_is_numpys(shape: tuple[int, ...], tile: int) -> None:
    from prospero_jax.renderers.tile_grid import as_tiles, tile_max

    values = np.random.default_rng(len(shape)).integers(-9, 99, shape).astype(np.int32)
    got = tile_max(values, tile)
    expected = as_tiles(values, tile).max(axis=(-3, -1))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_runs_of_rows_are_gathered_in_order_with_repeats() -> None:
    from prospero_jax.evaluators.tape import run_rows

    starts, lengths = np.array([5, 0, 5, 9]), np.array([2, 3, 0, 1])
    assert run_rows(starts, lengths).tolist() == [5, 6, 0, 1, 2, 9]
    assert run_rows(starts[:0], lengths[:0]).tolist() == []


def test_the_kept_rows_come_lane_by_lane_each_in_its_parents_order() -> None:
    from prospero_jax.evaluators.tape import Pruned
    from prospero_jax.renderers.hierarchy import emitted

    rng = np.random.default_rng(11)
    rows, lanes = 37, 4
    emit = rng.integers(0, 3, rows * lanes).astype(np.int8)  # 0: dropped, 1: kept, 2: constant
    level = Pruned(*(np.zeros(lanes) for _ in range(4)), emit, *(np.zeros(0, np.int32),) * 2)
    row, at = emitted(level, lanes)
    lane, expected_row = np.nonzero(emit.reshape(rows, lanes).T)
    np.testing.assert_array_equal(row, expected_row)
    np.testing.assert_array_equal(at, expected_row * lanes + lane)
    assert (np.diff(at % lanes) >= 0).all()  # lane by lane
    assert len(row) == np.count_nonzero(emit)


def test_the_kept_children_come_lane_by_lane_as_their_tapes_do() -> None:
    from prospero_jax.renderers.hierarchy import kept_children

    assert kept_children(np.array([[0, 2, 1], [3, 0, 0]])).tolist() == [3, 1, 2]
    rng = np.random.default_rng(12)
    kept = np.where(rng.random((41, 16)) < 0.3, rng.integers(1, 9, (41, 16)), 0)
    values = rng.random(kept.shape)  # any per-child array, (parents, lanes)
    left = kept_children(kept)
    np.testing.assert_array_equal(values.ravel()[left], values.T[kept.T > 0])  # as before
    assert (np.diff(left % 16) >= 0).all()
    assert len(left) == np.count_nonzero(kept)
    assert kept_children(np.zeros((0, 4), np.int32)).tolist() == []


def test_pending_tapes_taken_then_built_are_the_built_tapes_taken() -> None:
    # A heightmap's leaf boxes keep their tapes pending (next_tapes' arguments) until a
    # box is known to be evaluated; slicing and masking them first, then building, must
    # give the rows building first would, and nothing may read them unbuilt.
    from prospero_jax.evaluators.tape import Pruned, Tapes
    from prospero_jax.renderers.hierarchy import Frontier, PendingTapes, built, next_tapes, tapes_of

    rng = np.random.default_rng(7)
    rows, lanes, children = 40, 4, 90
    source = Tapes(
        rng.integers(0, 20, rows).astype(np.int32),
        rng.integers(-1, rows, (rows, 2)).astype(np.int32),
        rng.normal(size=rows).astype(np.float32),
        np.zeros((1, 4), np.float32),
    )
    level = Pruned(
        *(np.zeros(lanes) for _ in range(4)),
        rng.integers(1, 3, rows * lanes).astype(np.int8),  # emit: kept, or to a constant
        rng.integers(0, rows, rows * lanes).astype(np.int32),
        rng.integers(0, rows, rows * lanes).astype(np.int32),
    )
    row = np.sort(rng.integers(0, rows, children))
    at = row * lanes + rng.integers(0, lanes, children)
    pending = PendingTapes(source, level, row, at)
    eager = next_tapes(source, row, level, at)
    for index in (slice(5, 60), rng.random(children) < 0.4, rng.permutation(children)):
        got, expected = pending.take(index).built(), eager.take(index)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    front = Frontier(pending, np.array([children]), np.zeros(1), np.zeros(1), 8)
    with pytest.raises(TypeError, match="built"):
        tapes_of(front)
    np.testing.assert_array_equal(tapes_of(built(front)).ops, eager.ops)


def test_a_2d_image_is_the_octrees_z_fixed_case(
    quarter: pj.Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One hierarchy for 2-D and 3-D: the culled image walks the octree with one sample,
    # leaf boxes one sample thick and (k, 1) splits; its per-level figures are the walk's,
    # each level's tapes the ambiguous tiles the level above left.
    from prospero_jax.renderers import culled, octree

    walks: list[tuple[int, Any, Any]] = []

    def spy(*args: Any, **kwargs: Any) -> None:
        walks.append((len(args[3]), kwargs.get("leaf_thick"), kwargs.get("level_splits")))
        octree.walk(*args, **kwargs)

    monkeypatch.setattr(culled, "walk", spy)
    stats: list[dict[str, Any]] = []
    seen: list[tuple[int, int]] = []
    image = pj.render(
        quarter, 256, mode="culled", stats=stats, progress=lambda d, t: seen.append((d, t))
    )
    assert walks == [(1, 1, [(4, 1), (2, 1)])]  # 256 px: 64-px tiles, 32-px, then pixels
    assert [level["tile"] for level in stats] == [64, 32, "pixels"]
    assert stats[0]["tapes"] == 1
    for above, below in itertools.pairwise(stats):
        assert below["tapes"] == above["ambiguous"] > 0
    assert seen == [(1, 3), (2, 3), (3, 3)]  # each level, then the leaves
    assert np.array_equal(image, pj.render(quarter, 256, mode="brute"))
