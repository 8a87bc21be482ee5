"""Heightmaps: culled == brute force voxel for voxel, both against the float64 oracle;
normals against the oracle's central differences; the images and the CLI command."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import prospero_jax as pj
from cli.main import app
from prospero_jax.ir.passes import transform_inputs
from prospero_jax.renderers import compiled_tier
from prospero_jax.renderers.heightmap import depths
from prospero_jax.renderers.octree import THICK as SLAB
from prospero_jax.renderers.render import drawn
from tests.conftest import shared_path
from tests.programs import examples, programs

#: The shared solids and a region that holds each.
SOLIDS = {"bear": 1.5, "colonnade": 1.0, "tanglecube": 3.0}


@pytest.fixture(autouse=True)
def _unbought(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no program's compiled tier bought: what earlier tests of
    the process interpreted does not send this one's leaves elsewhere."""
    monkeypatch.setattr(compiled_tier, "_rent", {})


def oracle_first(program: pj.Program, size: int, depth: int, half: float) -> np.ndarray:
    """The float64 oracle's first inside sample per pixel (-1: none), and its values."""
    region = (-half, half, -half, half)
    zs = depths(depth).astype(np.float32).astype(np.float64)  # the depths renderers see
    values = np.stack([pj.reference.values(program, size, region=region, z=z) for z in zs])
    inside = values < 0
    first = np.where(inside.any(axis=0), inside.argmax(axis=0), -1)
    return first, values


def index_of(heightmap: pj.Heightmap) -> np.ndarray:
    zs = depths(heightmap.depth).astype(np.float32).astype(np.float64)
    index = np.searchsorted(-zs, -np.nan_to_num(heightmap.z, nan=-9.0))
    return np.where(np.isfinite(heightmap.z), index, -1)


@pytest.mark.parametrize("model", sorted(SOLIDS))
def test_culled_equals_brute_and_the_oracle_on_the_shared_solids(model: str) -> None:
    program, half = pj.load(shared_path(f"models/{model}.vm")), SOLIDS[model]
    region = (-half, half, -half, half)
    size, depth = 40, 2 * SLAB + 5  # three slabs, the last one short
    culled = pj.render_heightmap(program, size, depth, region=region, mode="culled", normals=False)
    brute = pj.render_heightmap(program, size, depth, region=region, mode="brute", normals=False)
    np.testing.assert_array_equal(culled.z, brute.z)  # NaN where empty, in both
    assert 0.05 < np.isfinite(culled.z).mean() < 0.95
    first, values = oracle_first(program, size, depth, half)
    ours = index_of(culled)
    differ = np.argwhere(ours != first)
    for row, col in differ:  # only where the deciding voxel's value is within rounding of 0
        k = max(ours[row, col], first[row, col])
        assert abs(values[k, row, col]) < 1e-4, (model, row, col)
    assert len(differ) <= 0.01 * size * size


@pytest.mark.parametrize("model", sorted(SOLIDS))
def test_a_turned_view_turns_the_sources_sign_program_and_keeps_the_contract(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A turned heightmap culls the source's sign program turned (its atoms' forms with
    # it), derived once for every turn: a new turn specialises nothing. Its first samples
    # are the float64 oracle's (of the turned program) but where the deciding voxel's
    # value is within 1e-5 of 0 (the image contract).
    from prospero_jax.renderers import render

    program, half = pj.load(shared_path(f"models/{model}.vm")), SOLIDS[model]
    size, depth = 40, 2 * SLAB + 5
    view = pj.View(size, (-half, half, -half, half), depth=depth, rotation=pj.rotation(30, -20))
    pj.render_heightmap(program, replace(view, rotation=pj.rotation(10, 5)), normals=False)
    monkeypatch.setattr(render, "specialise", lambda p: pytest.fail("specialised a turn"))
    culled = pj.render_heightmap(program, view, normals=False)
    turned, _ = view.pose(program)
    first, values = oracle_first(turned, size, depth, half)
    ours = index_of(culled)
    differ = np.argwhere(ours != first)
    for row, col in differ:
        k = max(ours[row, col], first[row, col])
        assert abs(values[k, row, col]) < 1e-5, (model, row, col, values[k, row, col])
    assert len(differ) <= 0.01 * size * size
    assert 0.05 < np.isfinite(culled.z).mean() < 0.95


@settings(max_examples=examples(15), deadline=None)
@given(programs(max_size=25, solid=True))
def test_culled_equals_brute_on_random_solids(program: pj.Program) -> None:
    # By default culling draws the sign program (brute force, the program op by op): the
    # two may differ only where the deciding voxel's value is within rounding of 0 (the
    # image contract's 1e-5; `2y + x + z` at z = -1: 0 as an affine form, -6e-8 op by op).
    culled = pj.render_heightmap(program, 24, 20, mode="culled", normals=False)
    brute = pj.render_heightmap(program, 24, 20, mode="brute", normals=False)
    ours, theirs = index_of(culled), index_of(brute)
    differ = np.argwhere(ours != theirs)
    if len(differ):
        _, values = oracle_first(program, 24, 20, 1.0)
        for row, col in differ:
            found = [k for k in (ours[row, col], theirs[row, col]) if k >= 0]
            assert abs(values[min(found), row, col]) < 1e-5, (row, col)


@settings(max_examples=examples(15), deadline=None)
@given(programs(max_size=25, solid=True), st.booleans())
def test_culled_equals_brute_on_random_solids_with_the_compiled_tiers_bought(
    program: pj.Program, exact: bool
) -> None:
    # The compiled leaves (the source program's closure) and, where no row can be chosen
    # away, the compiled interval closure bounding every level: brute force's image,
    # exactly so (float32, op by op) and by default.

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_tier, "price", lambda _: 0.0)
        culled = pj.render_heightmap(program, 24, 20, mode="culled", normals=False, exact=exact)
    brute = pj.render_heightmap(program, 24, 20, mode="brute", normals=False, exact=exact)
    np.testing.assert_array_equal(culled.z, brute.z)


TILTED = "x var-x\nz var-z\nh const 0.5\nt mul x h\nd sub z t\nr sub d h"  # z < x/2 + 1/2


def searched_and_sliced(program: pj.Program, view: pj.View) -> np.ndarray:
    """The column search and the slices agree, except at samples whose float64 value is
    within float32 rounding of 0; returns the slices' first samples."""
    from prospero_jax.renderers import heightmap
    from prospero_jax.renderers.render import drawn

    target = pj.Target()
    sign, zs = drawn(program, target, culled=False), view.zs()
    with target.precision():
        slices = heightmap._slices(sign, view, zs, target, None)
        searched = heightmap._searched(sign, view, zs, target, None)
    xs, ys = view.axes()
    rows, cols = np.nonzero(searched != slices)
    assert len(rows) <= 0.01 * slices.size
    for row, col in zip(rows, cols, strict=True):
        k = min(int(i) for i in (slices[row, col], searched[row, col]) if i >= 0)
        point = (np.float32(v).astype(np.float64) for v in (xs[col], ys[row], zs[k]))
        assert abs(pj.reference.evaluate(program, *point)) < 1e-6, (row, col, k)
    return slices


@pytest.mark.parametrize("model", ["bear", "colonnade", "tilted"])
def test_the_accelerators_column_search_agrees_with_the_slices(model: str) -> None:
    # Brute force on an accelerator searches each tile's columns in one device loop; run
    # here on CPU, it finds what the slice-by-slice loop finds, except at samples whose
    # value is within float32 rounding of 0 (XLA fuses the loop's body its own way:
    # colonnade's flat tops sit on sample planes). The tilted plane's every column is
    # found, so its loop stops before the depths run out.
    if model == "tilted":
        program, half = pj.parse(TILTED), 1.0
    else:
        program, half = pj.load(shared_path(f"models/{model}.vm")), SOLIDS[model]
    view = pj.View(48, region=(-half, half, -half, half), depth=37)
    slices = searched_and_sliced(program, view)
    assert (slices >= 0).mean() == (1.0 if model == "tilted" else pytest.approx(0.45, abs=0.3))


@settings(max_examples=examples(10), deadline=None)
@given(programs(max_size=25, solid=True))
def test_the_column_search_agrees_with_the_slices_on_random_solids(program: pj.Program) -> None:
    searched_and_sliced(program, pj.View(24, depth=20))


def test_columns_resolved_above_are_not_evaluated_below() -> None:
    # z - 0.5 < 0 below z = 0.5: boxes below it are proved inside on the way down, so the
    # leaves evaluate only the layer that holds the surface, and nothing under it.
    from prospero_jax.renderers import octree
    from prospero_jax.renderers.render import drawn

    program = pj.parse("z var-z\nh const 0.5\nr sub z h")
    depth, size = 8 * SLAB, 32
    seen: list[tuple[int, int]] = []
    heightmap = pj.render_heightmap(
        program,
        size,
        depth,
        mode="culled",
        normals=False,
        progress=lambda d, t: seen.append((d, t)),
    )
    expected = depths(depth)[np.argmax(depths(depth).astype(np.float32) < 0.5)]
    np.testing.assert_allclose(heightmap.z, expected, rtol=1e-6)
    assert seen[-1][0] == seen[-1][1]
    assert len({t for _, t in seen}) == 1

    target = pj.Target()
    zs, stats = depths(depth).astype(np.float32), []
    first = np.full((size, size), octree.FAR, np.int64)
    axis = pj.View(size).axes()[0].astype(np.float32)
    with target.precision():
        octree.first_inside(
            drawn(program, target, True), axis, axis[::-1], zs, target, first, stats=stats
        )
    surface = int(np.argmax(zs < 0.5)) // SLAB  # the layer that holds z = 0.5
    columns = (size // octree.LEAF) ** 2
    assert stats[-1]["boxes"] <= 2 * columns, stats  # that layer (and the one above: z's rounding)
    assert (first == surface * SLAB + np.argmax(zs[surface * SLAB :] < 0.5)).all()


CAPPED_CYLINDER = """x var-x
y var-y
z var-z
xx square x
yy square y
s add xx yy
q sqrt s
r const 0.5
wall sub q r
h const 0.25
cap sub z h
out max wall cap
"""


@pytest.mark.parametrize(
    ("source", "free"),
    [
        ("x var-x\nh const 0.5\na sub x h\nn neg x\nb sub n h\nr max a b", (True, True)),
        (CAPPED_CYLINDER.replace("out max wall cap", "out sub q r"), (True, True)),
        ("x var-x\ny var-y\nz var-z\nh const 0.25\na add x h\nr add a z", (False, False)),
        # The sign program's form 2x - y is 2x - y + (0·z + 0), 0·z a zero whose sign is
        # z's; op by op, the tape reads x and y only.
        ("x var-x\ny var-y\nt const 2\na mul x t\nr sub a y", (False, True)),
        (CAPPED_CYLINDER, (False, False)),
    ],
)
@pytest.mark.parametrize("exact", [False, True])
def test_a_tape_reads_z_where_a_row_does(source: str, free: tuple[bool, bool], exact: bool) -> None:
    # Per tape of a concatenation (the sign program's atoms by default, the program op by
    # op when exact), empty tapes between and after them.
    from prospero_jax.renderers.hierarchy import root_tape

    target = pj.Target(exact=exact)
    tape = root_tape(drawn(pj.parse(source), target, True), target.dtype)
    twice = tape.take(np.r_[np.arange(len(tape)), np.arange(len(tape))])
    lengths = np.array([0, len(tape), 0, len(tape), 0])
    assert twice.z_free(lengths).tolist() == [False, free[exact], False, free[exact], False]


@pytest.mark.parametrize("exact", [False, True])
def test_boxes_whose_tapes_read_no_z_search_their_first_depths_only(
    exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cylinder capped at z = 0.25: below the cap, the boxes across its wall keep their
    # columns outside it open down to the floor, on the cylinder's tape alone, which
    # reads no z. Each such box is searched down to its first depth only, and finds what
    # every depth would.
    from prospero_jax.renderers import octree

    program = pj.parse(CAPPED_CYLINDER)
    searched: list[tuple[np.ndarray, np.ndarray]] = []  # per box: reads no z, depths searched
    lower, leaf = octree.lower_firsts, octree.leaf_firsts

    def lower_firsts(front, xs, ys, depths, target, first, offsets, caps):  # type: ignore[no-untyped-def]
        searched.append((octree.tapes_of(front).z_free(front.lengths), caps))
        return lower(front, xs, ys, depths, target, first, offsets, caps)

    def leaf_firsts(front, xs, ys, depths, target, limits=None, **kw):  # type: ignore[no-untyped-def]
        deepest = limits.reshape(len(limits), -1).max(axis=1)  # the host tier's frames
        searched.append((octree.tapes_of(front).z_free(front.lengths), deepest))
        return leaf(front, xs, ys, depths, target, limits, **kw)

    monkeypatch.setattr(octree, "lower_firsts", lower_firsts)
    monkeypatch.setattr(octree, "leaf_firsts", leaf_firsts)
    monkeypatch.setattr(octree, "SEARCH_ROWS", 0)  # the leaf kernel's boxes (split_search's below)
    culled = pj.render_heightmap(program, 64, mode="culled", normals=False, exact=exact)
    monkeypatch.undo()
    brute = pj.render_heightmap(program, 64, mode="brute", normals=False, exact=exact)
    np.testing.assert_array_equal(culled.z, brute.z)
    free = np.concatenate([f for f, _ in searched])
    depths = np.concatenate([d for _, d in searched])
    assert free.sum() >= 8  # boxes across the wall, in several layers
    assert (depths[free] <= 1).all()
    assert (depths[~free] > 1).any()


@pytest.mark.parametrize("model", ["colonnade", "sphere"])
def test_leaf_layers_merged_into_one_call_find_what_a_call_a_layer_finds(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Consecutive layers of short-taped leaf boxes go to the leaf kernel together (a call
    # costs what ~200 boxes do); a column then has boxes at several depths in one call,
    # and its first inside sample must be the least of them, as one layer a call finds.
    from prospero_jax.renderers import octree

    program = (
        pj.parse("x var-x\ny var-y\nz var-z\nxx mul x x\nyy mul y y\nzz mul z z\n"
                 "s add xx yy\nt add s zz\nr sqrt t\nh const 0.6\nd sub r h")
        if model == "sphere"
        else pj.load(shared_path("models/colonnade.vm"))
    )  # fmt: skip
    calls: list[int] = []
    lower_firsts = octree.lower_firsts

    def counted(front: object, *args: object) -> object:
        calls.append(len(np.unique(args[2], axis=0)))  # its layers
        return lower_firsts(front, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(octree, "lower_firsts", counted)
    monkeypatch.setattr(octree, "SEARCH_ROWS", 0)  # the leaves in calls of their own
    merged = pj.render_heightmap(program, 128, mode="culled", normals=False).z
    merged_calls, calls[:] = list(calls), []
    monkeypatch.setattr(octree, "MERGED_BOXES", 0)
    single = pj.render_heightmap(program, 128, mode="culled", normals=False).z
    np.testing.assert_array_equal(merged, single)
    assert set(calls) == {1}
    assert max(merged_calls) > 1
    assert len(merged_calls) < len(calls)


def test_runs_of_layers_are_merged_while_both_budgets_hold() -> None:
    from prospero_jax.renderers.octree import _merged

    bounds = np.array([0, 4, 24, 964, 2082, 2488, 2500])
    lengths = np.ones(2500, np.int64)
    assert _merged(bounds, lengths, 1024, 10**6).tolist() == [0, 964, 2082, 2500]
    lengths[2082:2488] = 20  # the fifth run's rows over the budget: it stays alone
    assert _merged(bounds, lengths, 1024, 2000).tolist() == [0, 964, 2082, 2488, 2500]
    assert _merged(bounds, lengths, 0, 0).tolist() == bounds.tolist()


def test_the_octree_on_the_host_tier_finds_what_the_kernels_find() -> None:
    # Colonnade's sign program is atoms, min and max: the host tier prunes its boxes (z
    # an interval too) and evaluates its leaves in NumPy; the heightmap is the same.
    program = pj.load(shared_path("models/colonnade.vm"))
    maps = [
        pj.render_heightmap(program, 48, 40, normals=False, target=pj.Target(tier=tier)).z
        for tier in ("host", "kernels")
    ]
    np.testing.assert_array_equal(*maps)
    assert 0.05 < np.isfinite(maps[0]).mean() < 0.95


SPHERE = (
    "x var-x\ny var-y\nz var-z\na square x\nb square y\nc square z\n"
    "s add a b\nt add s c\nr sqrt t\nh const 0.6\nv sub r h"
)


@pytest.mark.parametrize(
    ("model", "half"), [("bear", 1.5), ("tanglecube", 3.0), ("sphere", 1), ("colonnade", 1)]
)
def test_the_compiled_leaf_tier_finds_what_the_leaf_kernel_finds(
    monkeypatch: pytest.MonkeyPatch, model: str, half: float
) -> None:
    # The bear's leaf tapes keep most of its rows, tanglecube's all of its 20 (nothing
    # prunes it), the sphere's one row (a quadric) is worth its closure's 11 rows with the
    # leaf kernel's cost before any row counted (FIXED_ROWS): once interpreting them has
    # cost what compiling would, their leaves go to the jitted closure of the source
    # program (the walk's is the sign program), and tanglecube's and the sphere's levels
    # to their compiled interval closures. The colonnade's tapes of a few rows stay
    # interpreted (its 808-row closure would cost more). Same heightmap either way.
    from prospero_jax.renderers import octree

    program = pj.parse(SPHERE) if model == "sphere" else pj.load(shared_path(f"models/{model}.vm"))
    region = (-half, half, -half, half)
    monkeypatch.setattr(compiled_tier, "price", lambda _: np.inf)  # never bought
    interpreted = pj.render_heightmap(program, 48, 40, region=region, normals=False).z
    monkeypatch.setattr(compiled_tier, "price", lambda _: 0.0)  # bought at once
    calls, pruned = [], []
    compiled, prune_level = compiled_tier.firsts, octree.prune_level
    monkeypatch.setattr(compiled_tier, "firsts", lambda *a: calls.append(1) or compiled(*a))

    def level(*args: object, prune: bool = True) -> object:
        pruned.append(prune)
        return prune_level(*args, prune=prune)  # type: ignore[arg-type]

    monkeypatch.setattr(octree, "prune_level", level)
    np.testing.assert_array_equal(
        pj.render_heightmap(program, 48, 40, region=region, normals=False).z, interpreted
    )
    assert 0.02 < np.isfinite(interpreted).mean() < 0.98
    assert bool(calls) == (model != "colonnade")  # the compiled tier ran
    if model in ("tanglecube", "sphere"):  # no kernel: every level bounded by intervals
        assert pruned == []
    elif model == "bear":  # the level above the leaves proved its boxes by intervals alone
        assert pruned[-1] is False
        assert pruned[0] is True
    else:  # the kernels prune every level and keep the leaves' tapes
        assert all(pruned)


def test_the_compiled_tier_buys_the_closures_at_the_first_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Target(tier="compiled") (the viewer's, for solids): nothing rented first, the same
    # heightmap as the default tier's.

    program = pj.load(shared_path("models/tanglecube.vm"))
    view = pj.View(32, (-3, 3, -3, 3), depth=32)
    monkeypatch.setattr(compiled_tier, "_rent", {})
    calls: list[int] = []
    compiled = compiled_tier.firsts
    monkeypatch.setattr(compiled_tier, "firsts", lambda *a: calls.append(1) or compiled(*a))
    rented = pj.render_heightmap(program, view, normals=False).z
    assert not calls  # the default tier rents first
    bought = pj.render_heightmap(program, view, target=pj.Target(tier="compiled"), normals=False)
    assert calls
    np.testing.assert_array_equal(bought.z, rented)


@pytest.mark.parametrize("model", ["bear", "sphere"])
def test_the_compiled_leaves_find_each_open_columns_first_inside_sample(model: str) -> None:
    # compiled_tier.firsts on leaf boxes whose columns are known closed (a first inside
    # sample at or above the box's top), open through the box, or open down to a sample
    # inside or just below it: an open column gets its first sample where the value is
    # < 0 (by the float64 oracle, up to values within 1e-5 of 0), NOT_FOUND if none; a
    # closed one NOT_FOUND (nothing to lower). The bear's 657 rows evaluate its open
    # columns only, the sphere's 11 its boxes whole (REDUCED_ROWS).
    from prospero_jax.evaluators.leaf_kernels import NOT_FOUND
    from prospero_jax.evaluators.oracle import evaluate
    from prospero_jax.renderers.hierarchy import Frontier, root_tape

    program = pj.parse(SPHERE) if model == "sphere" else pj.load(shared_path("models/bear.vm"))
    assert (len(program) > compiled_tier.REDUCED_ROWS) == (model == "bear")
    half = 1.5 if model == "bear" else 1.0
    xs, ys = (a.astype(np.float32) for a in pj.View(64, (-half, half, -half, half)).axes())
    zs = np.linspace(1, -1, 128).astype(np.float32)
    rng = np.random.default_rng(5)
    boxes = 300
    rows, cols = (8 * rng.integers(0, 8, boxes) for _ in range(2))
    tops = (16 * rng.integers(0, 8, boxes)).astype(np.int32)
    tapes = root_tape(program, "float32")
    part = Frontier(tapes.take(np.zeros(0, np.int64)), np.zeros(boxes, np.int64), rows, cols, 8)
    # Known: closed (top - 3, top), open (FAR, top + 16, top + 40) or open to inside the box.
    choices = np.array([-3, 0, NOT_FOUND, 16, 40, 1, 9, 15])
    known = tops[:, None, None] + rng.choice(choices, (boxes, 8, 8))
    known = np.minimum(known, NOT_FOUND).astype(np.int32)
    depths = zs[tops[:, None] + np.arange(16)]
    got = compiled_tier.firsts(program, part, xs, ys, depths, tops, known)

    pixel = np.arange(8)
    x = xs[cols[:, None] + pixel][:, None, None, :]
    y = ys[rows[:, None] + pixel][:, None, :, None]
    values = evaluate(program, x, y, depths[:, :, None, None])  # (boxes, 16, 8, 8)
    inside, near = values < 0, np.abs(values) < 1e-5
    expect = np.where(inside.any(1), inside.argmax(1) + tops[:, None, None], NOT_FOUND)
    closed = known <= tops[:, None, None]
    assert closed.any()
    assert (expect[~closed] != NOT_FOUND).any()  # some open columns find a sample
    if model == "bear":  # a short program's boxes are evaluated whole
        assert (got[closed] == NOT_FOUND).all()
    # A column may differ only where a sample above or at the deciding one is near 0.
    above = (
        np.arange(16)[None, :, None, None]
        <= (np.minimum(got, expect) - tops[:, None, None])[:, None]
    )
    doubtful = (near & above).any(1)
    wrong = (got != expect) & ~closed & ~doubtful
    assert not wrong.any(), f"{wrong.sum()} open columns differ"


def test_the_compiled_leaf_tier_is_rented_before_it_is_bought() -> None:
    from prospero_jax.renderers.hierarchy import Frontier, root_tape

    def part(program: pj.Program, rows: int) -> Frontier:
        tapes = root_tape(program, "float32")
        one = np.zeros(1, np.int64)
        return Frontier(tapes, np.array([rows]), one, one, 8)

    def shape(program: pj.Program) -> str:
        return compiled_tier.shaped(program).key

    bear = pj.load(shared_path("models/bear.vm"))
    short = pj.parse("z var-z\nh const 0.5\nr sub z h")
    cpu = pj.Target()
    compiled_tier._rent.pop(shape(bear), None)
    assert not compiled_tier.compiles(part(bear, 400), cpu, bear)  # nothing spent yet
    compiled_tier._rent[shape(bear)] = 10.0
    assert compiled_tier.compiles(part(bear, 400), cpu, bear)
    assert not compiled_tier.compiles(part(bear, 20), cpu, bear)  # pruned tapes are short
    compiled_tier._rent[shape(short)] = 10.0
    assert compiled_tier.compiles(part(short, 3), cpu, short)  # short, but nothing pruned
    # a sign program's one-row tapes (a sphere's quadric) beside its source's 10 rows:
    # the leaf kernel's cost before any row (FIXED_ROWS) makes the closure worth it; a
    # source of more rows than COMPILED_GAIN × (1 + FIXED_ROWS) is not
    sphere = pj.parse(SPHERE)
    compiled_tier._rent[shape(sphere)] = 10.0
    assert len(drawn(sphere, cpu, True)) == 1
    assert compiled_tier.compiles(part(sphere, 1), cpu, sphere)
    assert not compiled_tier.compiles(part(bear, 1), cpu, bear)
    compiled_tier._rent.pop(shape(sphere))
    compiled_tier._rent.pop(shape(bear))
    compiled_tier._rent.pop(shape(short))
    # Rent is per shape: what one turned view of the bear paid, the next one has paid.
    one, other = (
        drawn(pj.View(8, rotation=pj.rotation(a, b)).pose(bear)[0], cpu, True)
        for a, b in ((20, -25), (27, -22))
    )
    assert one != other
    compiled_tier._rent[shape(one)] = 10.0
    assert compiled_tier.compiles(part(other, 400), cpu, other)
    compiled_tier._rent.pop(shape(one))


@pytest.mark.parametrize("depths", [1, 7, 8, 16, 24, 40])
def test_a_columns_first_inside_is_its_first_true_depth(depths: int) -> None:
    # Columns of a multiple of 8 depths are read as words; the others, the boxes' 4-D
    # signs and strided views, by argmax. All as a column's first True depth says.
    from prospero_jax.renderers.column_search import first_true

    rng = np.random.default_rng(depths)
    for density in (0.0, 0.02, 0.3, 1.0):
        signs = rng.random((3000, depths)) < density
        signs[:depths, :] = np.eye(depths, dtype=bool)  # each depth the first somewhere
        expected = [next((d for d in range(depths) if row[d]), depths) for row in signs]
        assert first_true(signs).dtype == np.int32
        np.testing.assert_array_equal(first_true(signs), expected)
        strided = signs[::2]
        np.testing.assert_array_equal(first_true(strided), expected[::2])
        boxes = signs.reshape(-1, 1, depths).transpose(0, 2, 1)  # (boxes, depths, 1)
        np.testing.assert_array_equal(first_true(boxes)[:, 0], expected)


#: A sphere of radius 1.2 plus sqrt(x): NaN where x < 0 (never inside), for leaf boxes.
HALF_NAN_SPHERE = (
    "x var-x\ny var-y\nz var-z\nxx mul x x\nyy mul y y\nzz mul z z\ns add xx yy\n"
    "t add s zz\nr sqrt t\nh const 1.2\nd sub r h\nq sqrt x\nout add d q\n"
)


@pytest.mark.parametrize("count", [16, 32])
def test_a_leaf_boxs_first_inside_is_read_where_its_signs_are_computed(count: int) -> None:
    # The leaf kernel reduces a box's signs to each column's first inside depth; the same
    # as reducing the signs it returns: on pruned tapes of a random solid, with NaN values
    # (never inside) and columns inside at no depth, at the first, and at the last.
    from prospero_jax.evaluators.leaf_kernels import FIRSTS_CHUNK
    from prospero_jax.renderers import column_search as C
    from prospero_jax.renderers import hierarchy as H

    program = pj.parse(HALF_NAN_SPHERE)
    target = pj.Target()
    tapes = H.root_tape(program, target.dtype)
    side, boxes = 8, 40
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 8, boxes) * side
    cols = rng.integers(0, 8, boxes) * side
    front = H.Frontier(
        tapes.take(np.tile(np.arange(len(tapes)), boxes)), np.full(boxes, len(tapes)),
        rows, cols, side,
    )  # fmt: skip
    xs = np.linspace(-1, 1, 64).astype(np.float32)
    zs = np.linspace(1, -1, count).astype(np.float32)
    signs = H.leaf_pixels(front, xs, xs[::-1].copy(), zs, target)
    firsts = C.leaf_firsts(front, xs, xs[::-1].copy(), zs, target)
    np.testing.assert_array_equal(firsts, C.first_true(signs))
    assert {0, count}.issubset(np.unique(firsts))
    assert len(np.unique(firsts)) > 3
    # With limits (a column needs only depths above its limit), a box's search stops once
    # every column is found or past its limit: exact below the limit, else exact or none.
    limits = rng.integers(0, count + 1, firsts.shape).astype(np.int32)
    limited = C.leaf_firsts(front, xs, xs[::-1].copy(), zs, target, limits)
    below = firsts < limits
    np.testing.assert_array_equal(limited[below], firsts[below])
    assert ((limited[~below] == firsts[~below]) | (limited[~below] == count)).all()
    chunk = np.full_like(limits, FIRSTS_CHUNK)  # every column done after the first chunk
    first_chunk = C.leaf_firsts(front, xs, xs[::-1].copy(), zs, target, chunk)
    np.testing.assert_array_equal(first_chunk, np.where(firsts < FIRSTS_CHUNK, firsts, count))
    nothing = C.leaf_firsts(front, xs, xs[::-1].copy(), zs, target, np.zeros_like(limits))
    assert (nothing == count).all()  # no column needs a depth: no depth is evaluated


def test_octree_splits_refine_z_with_x_and_y() -> None:
    from prospero_jax.renderers.octree import octree_splits

    assert octree_splits(16, 32) == ((4, 4), (4, 4), (1, 2))
    assert octree_splits(2, 2) == ((2, 2),)
    assert octree_splits(1, 8) == ((1, 4), (1, 2))
    assert octree_splits(4, 1) == ((4, 1),)
    # A heightmap's walk takes the 2 × 2 split at the root, not above the leaves.
    assert octree_splits(128, 64) == ((4, 4), (4, 4), (4, 4), (2, 1))
    assert octree_splits(128, 64, small_first=True) == ((2, 2), (4, 4), (4, 4), (4, 2))
    assert octree_splits(64, 32, small_first=True) == octree_splits(64, 32)
    # Short tapes below the root: the leaves' parents thin (8 leaves a side, one thick).
    assert octree_splits(64, 32, z_first=True) == ((4, 4), (2, 8), (8, 1))
    assert octree_splits(16, 8, z_first=True) == ((2, 8), (8, 1))
    with pytest.raises(ValueError, match="too few"):
        octree_splits(8, 8, z_first=True)


def test_a_heightmap_is_the_same_whichever_split_comes_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The heightmap's walk splits smallest first; the same boxes' depths either way."""
    from prospero_jax.renderers import octree

    program = pj.load(shared_path("models/bear.vm"))
    view = pj.View(64, (-1.5, 1.5, -1.5, 1.5), depth=64)  # 8 leaf columns, 4 leaf layers
    real = octree.octree_splits
    # 2 × 2 × 2 then 4 × 4 × 2, against 4 × 4 × 4 then 2 × 2 × 1:
    assert real(8, 4, small_first=True) != real(8, 4)
    ours = pj.render_heightmap(program, view, normals=False)
    monkeypatch.setattr(octree, "octree_splits", lambda *a, small_first=False, **k: real(*a, **k))
    largest_first = pj.render_heightmap(program, view, normals=False)
    np.testing.assert_array_equal(ours.z, largest_first.z)


def test_normals_group_tiles_in_square_blocks() -> None:
    from prospero_jax.renderers.heightmap_normals import _z_order

    rows, cols = np.divmod(np.arange(64), 8)  # an 8 × 8 grid of tiles, row-major
    order = _z_order(rows, cols)
    assert sorted(order.tolist()) == list(range(64))
    for block in order.reshape(-1, 4):  # each 4 consecutive: a 2 × 2 square
        assert (np.ptp(rows[block]), np.ptp(cols[block])) == (1, 1)
    for block in order.reshape(-1, 16):  # each 16: a 4 × 4 square
        assert (np.ptp(rows[block]), np.ptp(cols[block])) == (3, 3)
    gaps = order[order % 3 != 0]  # with tiles missing, still in the curve's order
    kept = np.flatnonzero(np.arange(64) % 3 != 0)
    np.testing.assert_array_equal(kept[_z_order(rows[kept], cols[kept])], gaps)


def test_short_tapes_are_refined_in_z_first_to_the_same_heightmap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The colonnade's boxes below the root hold short tapes: the walk splits them z first
    (the leaves' parents one leaf thick), and finds the same first samples as when it
    splits them as the bear's."""
    from prospero_jax.renderers import octree

    program = pj.load(shared_path("models/colonnade.vm"))
    n = 256  # (2, 2) at the root, then (2, 8), (8, 1) rather than (4, 4), (4, 2)
    target = pj.Target()
    xs, ys = (a.astype(np.float32) for a in pj.View(n).axes())
    zs = depths(n).astype(np.float32)
    sign = drawn(program, target, True)

    def walked(thin_rows: int) -> tuple[np.ndarray, list[str]]:
        monkeypatch.setattr(octree, "THIN_ROWS", thin_rows)
        first, stats = np.full((n, n), octree.FAR, np.int64), []
        with target.precision():
            octree.first_inside(sign, xs, ys, zs, target, first, stats=stats)
        return first, [level["box"] for level in stats if level["boxes"]]

    rows = octree.THIN_ROWS
    thin, thin_boxes = walked(rows)
    thick, thick_boxes = walked(-1)  # no tape that short
    assert "64 px × 16" in thin_boxes, thin_boxes
    assert "32 px × 32" not in thin_boxes, thin_boxes
    assert "32 px × 32" in thick_boxes, thick_boxes
    np.testing.assert_array_equal(thin, thick)
    assert (thin < octree.FAR).mean() > 0.5  # a picture: most columns meet the colonnade
    # A program whose tapes nothing prunes keeps the schedule (its levels are soon bounded
    # by its compiled closure: kernels compiled for z first would serve one frame).
    sign = drawn(pj.parse(SPHERE), target, True)  # short tapes too
    _, boxes = walked(rows)
    assert "64 px × 16" not in boxes, boxes
    assert "32 px × 32" in boxes, boxes


def test_the_octree_refuses_grids_it_cannot_split() -> None:
    # Callers pad to powers of two; a grid that is not one is a bug, said plainly.
    from prospero_jax.renderers.octree import first_inside

    program = pj.parse("z var-z\nh const 0.5\nr sub z h")
    axis = np.linspace(-1, 1, 24, dtype=np.float32)
    first = np.zeros((24, 24), np.int64)
    with pytest.raises(ValueError, match="not powers of two"):
        first_inside(
            program, axis, axis, np.linspace(1, -1, 16, dtype=np.float32), pj.Target(), first
        )


@pytest.mark.parametrize("model", ["tanglecube", "bear"])
def test_normals_match_the_oracles_central_differences(model: str) -> None:
    program, half = pj.load(shared_path(f"models/{model}.vm")), SOLIDS[model]
    region = (-half, half, -half, half)
    target = pj.Target(dtype="float64")
    heightmap = pj.render_heightmap(program, 48, 48, region=region, target=target)
    assert heightmap.normal is not None
    rows, cols = np.nonzero(np.isfinite(heightmap.z))
    xs, ys = pj.View(48, region).axes()
    point = [xs[cols], ys[rows], heightmap.z[rows, cols]]
    h = 1e-6
    gradient = []
    for axis in range(3):
        up = [p + (h if k == axis else 0) for k, p in enumerate(point)]
        down = [p - (h if k == axis else 0) for k, p in enumerate(point)]
        gradient.append(
            (pj.reference.evaluate(program, *up) - pj.reference.evaluate(program, *down)) / (2 * h)
        )
    expected = np.stack(gradient, axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    ours = heightmap.normal[rows, cols]
    assert np.allclose(np.linalg.norm(ours, axis=1), 1)
    angle = np.arccos(np.clip(np.sum(ours * expected, axis=1), -1, 1))
    # Smooth almost everywhere: min/max creases (bear) are where the two may differ.
    assert np.median(angle) < 1e-4
    assert np.mean(angle < 1e-3) > 0.9


def test_a_rotation_is_applied_to_the_points_before_the_program() -> None:
    program = pj.load(shared_path("models/colonnade.vm"))
    turn = pj.view_rotation(30, 60)
    turned = pj.render_heightmap(program, 32, 32, rotation=turn, normals=False)
    direct = pj.render_heightmap(transform_inputs(program, turn), 32, 32, normals=False)
    np.testing.assert_array_equal(turned.z, direct.z)
    points = np.random.default_rng(0).uniform(-1, 1, (3, 200))
    moved = turn @ points
    np.testing.assert_allclose(
        pj.reference.evaluate(transform_inputs(program, turn), *points),
        pj.reference.evaluate(program, *moved),
        rtol=1e-9,
        atol=1e-9,
    )
    with pytest.raises(ValueError, match="3 × 3"):
        pj.render_heightmap(program, 16, rotation=np.eye(2))


def test_images_of_a_heightmap() -> None:
    sphere = pj.parse(
        "x var-x\ny var-y\nz var-z\nxx square x\nyy square y\nzz square z\n"
        "s add xx yy\nt add s zz\nr const 0.5\nv sub t r"
    )
    heightmap = pj.render_heightmap(sphere, 64, 64)
    lit, normals, depth = (pj.shade_heightmap(heightmap, k) for k in ("lit", "normals", "depth"))
    assert lit.shape == depth.shape == (64, 64)
    assert normals.shape == (64, 64, 3)
    empty = ~np.isfinite(heightmap.z)
    assert empty[0, 0]
    assert not empty[32, 32]
    for image in (lit, normals, depth):
        assert (image[empty] == 0).all()
    # Lit from the upper left: the upper-left flank is brighter than the lower-right one.
    assert lit[20, 20] > lit[44, 44]
    assert depth[32, 32] > depth[32, 12] > 0  # the top of the sphere is nearest
    with pytest.raises(ValueError, match="shade must be one of"):
        pj.shade_heightmap(heightmap, "glossy")
    with pytest.raises(ValueError, match="at least 2"):
        pj.render_heightmap(sphere, 16, 1)
    with pytest.raises(ValueError, match="GiB limit"):  # refused before anything is allocated
        pj.render_heightmap(sphere, 8192)


def test_render3d_writes_a_shaded_image_and_says_what_is_wrong(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "bear.png"
    bear = str(shared_path("models/bear.vm"))
    done = runner.invoke(
        app, ["render3d", bear, "-s", "48", "--region=-1.5,1.5,-1.5,1.5", "-o", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert out.exists()
    assert "solid" in done.output
    wrong = runner.invoke(
        app, ["render3d", bear, "-s", "32", "--shade", "normals", "-o", str(tmp_path / "n.pgm")]
    )
    assert wrong.exit_code == 2
    assert "PGM is greyscale" in wrong.output
    assert not (tmp_path / "n.pgm").exists()


def test_the_surface_depths_gradient_is_the_implicit_function_theorems() -> None:
    # A sphere of centre (a, b, c) and radius r: its top is z = c + sqrt(r² - (x-a)² - (y-b)²).
    program = pj.parse(
        "x var-x\ny var-y\nz var-z\na const 0.3\nb const -0.2\nc const 0.1\nr const 0.45\n"
        "dx sub x a\ndy sub y b\ndz sub z c\ns1 square dx\ns2 square dy\ns3 square dz\n"
        "t1 add s1 s2\nt2 add t1 s3\nn sqrt t2\nv sub n r"
    )
    depth_of = pj.surface_depth(program, 48, 48)
    constants = jnp.asarray(program.constants, jnp.float32)
    xs, ys = pj.View(48).axes()
    x, y = np.meshgrid(xs, ys)
    q = 0.45**2 - (x - 0.3) ** 2 - (y + 0.2) ** 2
    z = np.asarray(depth_of(constants))
    np.testing.assert_array_equal(np.isfinite(z), np.isfinite(pj.render_heightmap(program, 48).z))
    top = 0.1 + np.sqrt(np.maximum(q, 0))
    assert np.nanmax(np.abs(z - top)) < 1e-4  # refined off the sample grid, onto the surface
    interior = q > 0.02  # away from the rim, where dz/dθ grows without bound
    root = np.sqrt(np.where(interior, q, 1))
    expected = [
        np.sum(np.where(interior, (x - 0.3) / root, 0)),
        np.sum(np.where(interior, (y + 0.2) / root, 0)),
        np.sum(interior),
        np.sum(np.where(interior, 0.45 / root, 0)),
    ]
    mask = jnp.asarray(interior)
    gradient = jax.jit(jax.grad(lambda c: jnp.sum(jnp.where(mask, depth_of(c), 0.0))))(constants)
    np.testing.assert_allclose(np.asarray(gradient), expected, rtol=1e-3, atol=1e-2)


def test_the_surface_depth_stays_on_the_top_surface_near_a_silhouette() -> None:
    # Newton steps from the first inside sample used to slide to the back of the sphere
    # where a column grazes it: pixel (12, 32) came out 0.17548 (the lower root) and
    # dz/dr -24.47. The bracket between that sample and the one above it holds them.
    a, b, c, r = 0.1, -0.05, 0.2, 0.6
    program = pj.parse(
        f"x var-x\ny var-y\nz var-z\na const {a}\nb const {b}\nc const {c}\nr const {r}\n"
        "dx sub x a\ndy sub y b\ndz sub z c\ns1 square dx\ns2 square dy\ns3 square dz\n"
        "t1 add s1 s2\nt2 add t1 s3\nn sqrt t2\nv sub n r"
    )
    depth_of = pj.surface_depth(program, 48)
    constants = jnp.asarray(program.constants, jnp.float32)
    z = np.asarray(depth_of(constants))
    xs, ys = pj.View(48).axes()
    x, y = np.meshgrid(xs, ys)
    q = r**2 - (x - a) ** 2 - (y - b) ** 2
    top = c + np.sqrt(np.maximum(q, 0))
    assert np.isfinite(z).sum() > 500
    assert np.nanmax(np.abs(z - top)) < 1e-5  # every pixel, the rim's included
    slope = jax.grad(lambda k: depth_of(k)[12, 32])(constants)[3]  # dz/dr
    np.testing.assert_allclose(float(slope), r / np.sqrt(q[12, 32]), rtol=1e-3)


BOX = (
    "x var-x\ny var-y\nz var-z\nax abs x\nay abs y\naz abs z\n"
    "m max ax ay\nn max m az\nh const 0.5\nv sub n h"
)


@pytest.mark.parametrize("name", [*SOLIDS, "box"])
def test_normals_on_pruned_tiles_are_the_whole_programs(name: str) -> None:
    # Gradients at any points on pruned tapes (grouped_gradients, as meshes' vertices
    # take them: a group per cell's points nearest in z; here a 32-pixel tile's surface
    # points) must be what the whole program gives (gradients_at). The box's flat top
    # puts whole groups inside by intervals: their tapes are still pruned for the value.
    from prospero_jax.renderers.gradients import gradients_at, grouped_gradients

    if name == "box":
        program, half = pj.parse(BOX), 1.0
    else:
        program, half = pj.load(shared_path(f"models/{name}.vm")), SOLIDS[name]
    view = pj.View(96, (-half, half, -half, half))
    z = pj.render_heightmap(program, 96, region=view.region, normals=False).z
    xs, ys = view.axes()
    rows, cols = np.nonzero(np.isfinite(z))
    assert len(rows) > 100
    target = pj.Target()
    points = np.stack([xs[cols], ys[rows], z[rows, cols]], axis=1)
    value, gradient = grouped_gradients(program, points, (rows // 32) * 3 + cols // 32, target)
    expected_value, expected = gradients_at(program, xs[cols], ys[rows], z[rows, cols], target)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("turned", [False, True])
@pytest.mark.parametrize("name", ["bear", "colonnade"])
def test_heightmap_normals_from_image_tiles_are_the_whole_programs(name: str, turned: bool) -> None:
    # The CPU heightmap of a program long enough for pruned tapes takes its normals a
    # 16² tile of the image a tape (empty pixels padded with one of the tile's surface
    # points, read and written back by reshaping); they must be the whole program's
    # (gradients_at) at every surface pixel, also where the side (100) is not a multiple
    # of the tile, in a turned view, and NaN at every empty pixel.
    from prospero_jax.renderers.gradients import gradients_at, prunes_gradients

    program, half = pj.load(shared_path(f"models/{name}.vm")), SOLIDS[name]
    target = pj.Target()
    assert prunes_gradients(program, target)
    turn = pj.rotation(0.5, -0.3) if turned else None
    view = pj.View(100, (-half, half, -half, half), rotation=turn)
    heightmap = pj.render_heightmap(program, view, target=target)
    assert heightmap.normal is not None
    rows, cols = np.nonzero(np.isfinite(heightmap.z))
    assert 500 < len(rows) < 100 * 100
    xs, ys = view.axes()
    points = np.stack([xs[cols], ys[rows], heightmap.z[rows, cols]])
    rotation = np.eye(3) if turn is None else np.array(turn)
    _, gradient = gradients_at(program, *(rotation @ points), target)
    expected = gradient.astype(np.float64) @ rotation
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(heightmap.normal[rows, cols], expected, rtol=1e-5, atol=1e-6)
    empty = ~np.isfinite(heightmap.z)
    assert np.isnan(heightmap.normal[empty]).all()


@pytest.mark.parametrize("scale", ["1e25", "1e-25", "1"])
def test_normals_survive_gradients_whose_squares_leave_float32(scale: str) -> None:
    # ∇f = k (1, 0, 2): for k = 1e25 the squared length overflows float32, for 1e-25 it
    # underflows; the normal is (1, 0, 2) / √5 all the same, at every surface pixel.
    program = pj.parse(
        f"x var-x\nz var-z\nk const {scale}\nt const 2\nh const 0.1\n"
        "a mul z t\nb add x a\nc sub b h\nd mul c k"
    )
    heightmap = pj.render_heightmap(program, 40, normals=True)
    assert heightmap.normal is not None
    surface = np.isfinite(heightmap.z)
    assert surface.mean() > 0.5
    expected = np.array([1.0, 0.0, 2.0]) / np.sqrt(5)
    np.testing.assert_allclose(
        heightmap.normal[surface], np.broadcast_to(expected, (surface.sum(), 3)), atol=1e-6
    )
    assert np.isnan(heightmap.normal[~surface]).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unit_normals_are_nan_where_no_direction_is_known(dtype: str) -> None:
    # Normals are made unit length in the target's dtype on the device: a zero, an
    # infinite or a NaN gradient, or a pixel not asked for, gives NaN; the others (also
    # one whose squares overflow float32) are the float64 unit vector, turned if asked.
    from prospero_jax.evaluators.dual_kernel import unit_vectors

    vectors = np.array(
        [[0, 0, 0], [np.inf, 0, 1], [np.nan, 1, 1], [3e38, -3e38, 1e38], [1, 2, 3], [1, 2, 3]],
        dtype,
    ).T[None]  # (1, 3, 6)
    where = np.array([[True] * 5 + [False]])
    turn = pj.rotation(0.4, 1.1)
    target = pj.Target(dtype=dtype)
    for matrix in (None, np.array(turn, dtype)):
        with target.precision():
            unit = np.asarray(jax.jit(unit_vectors)(vectors, where, matrix))
        assert unit.dtype == dtype
        assert unit.shape == (1, 3, 6)
        assert np.isnan(unit[0, :, [0, 1, 2, 5]]).all()
        expected = vectors[0, :, 3:5].astype(np.float64)
        if matrix is not None:
            expected = matrix.astype(np.float64) @ expected
        expected /= np.linalg.norm(expected, axis=0)
        np.testing.assert_allclose(unit[0, :, 3:5], expected, atol=1e-6)


@pytest.mark.parametrize("turned", [False, True])
def test_the_dual_kernel_makes_the_unit_normals_of_what_it_evaluates(turned: bool) -> None:
    # The normals' dual kernel turns each tile's gradients and makes them unit length in
    # the tile's step (not in a pass of its own): what the unit rule gives of the duals it
    # returns, bit for bit, a point's vector together; NaN where no pixel is asked for.
    from prospero_jax.evaluators.dual_kernel import unit_vectors
    from prospero_jax.renderers.gradients import group_tapes, hulls_of
    from prospero_jax.renderers.hierarchy import tile_duals

    program = pj.load(shared_path("models/colonnade.vm"))
    target = pj.Target()
    rng = np.random.default_rng(5)
    corners = rng.uniform(-0.9, 0.8, (40, 3, 1)).astype(np.float32)
    points = corners + rng.uniform(0, 0.1, (40, 3, 256)).astype(np.float32)
    tapes, lengths = group_tapes(program, hulls_of(points), target)
    where = rng.random((40, 256)) < 0.8
    turn = np.array(pj.rotation(0.3, -0.7), np.float32) if turned else None
    duals = tile_duals(tapes, lengths, points, target)
    unit = tile_duals(tapes, lengths, points, target, where, turn)
    assert unit.shape == (40, 256, 3)
    want = np.asarray(jax.jit(unit_vectors)(duals[:, 1:], where, turn)).swapaxes(1, 2)
    np.testing.assert_array_equal(unit, want)
    assert np.isnan(unit[~where]).all()
    assert np.isfinite(unit[where]).mean() > 0.9


@pytest.mark.parametrize("model", ["bear", "colonnade", "tanglecube"])
def test_a_heightmap_with_no_surface_has_no_normals(model: str) -> None:
    # A view beside the model: every pixel empty, every normal NaN (the pruned normals'
    # path once raised on its empty list of tiles).
    program = pj.load(shared_path(f"models/{model}.vm"))
    got = pj.render_heightmap(program, 32, 16, region=(5, 6, 5, 6))
    assert np.isnan(got.z).all()
    assert got.normal is not None
    assert got.normal.shape == (32, 32, 3)
    assert np.isnan(got.normal).all()


@pytest.mark.parametrize("size", [96, 112, 128])
def test_heightmap_normals_of_any_count_of_tiles_share_one_compilation(size: int) -> None:
    # The viewer's views differ in their count of surface tiles: the unit normals are
    # made call by call of the dual kernel (whose shape is fixed), so no count compiles
    # anew (compiled per count, a bear view took 230 ms instead of 130); and they are
    # what the gradients give, made unit.
    from prospero_jax.evaluators.dual_kernel import dual_leaf_kernel
    from prospero_jax.renderers.gradients import gradients_at

    bear = pj.load(shared_path("models/bear.vm"))
    region = (-1.5, 1.5, -1.5, 1.5)
    pj.render_heightmap(bear, 80, region=region)  # compiled here, if not before
    compiled = dual_leaf_kernel._cache_size()
    got = pj.render_heightmap(bear, size, region=region)
    assert dual_leaf_kernel._cache_size() == compiled
    surface = np.isfinite(got.z)
    xs, ys = pj.View(size, region=region).axes()
    rows, cols = np.nonzero(surface)
    _, gradient = gradients_at(bear, xs[cols], ys[rows], got.z[surface], pj.Target())
    wide = gradient.astype(np.float64)
    expected = wide / np.linalg.norm(wide, axis=1, keepdims=True)
    close = np.einsum("ij,ij->i", got.normal[surface], expected) > np.cos(np.radians(0.1))
    assert close.mean() > 0.999, close.mean()


def test_group_gradients_of_a_group_inside_by_intervals_are_the_whole_programs() -> None:
    # A group on the box's flat top, whose box the intervals prove inside, keeps a tape
    # pruned for the value (not the sign alone), padded by repeating a point.
    from prospero_jax.renderers.gradients import gradients_at, group_gradients

    program = pj.parse(BOX)
    rng = np.random.default_rng(4)
    points = np.stack(
        [rng.uniform(-0.4, 0.4, 256), rng.uniform(-0.4, 0.4, 256), np.full(256, 0.25)]
    )
    points[:, 200:] = points[:, :1]  # padding: the first point again
    target = pj.Target()
    out = group_gradients(program, points[None].astype(np.float32), target)
    value, gradient = gradients_at(program, *points, target)
    np.testing.assert_array_equal(out[0, 0], value)
    np.testing.assert_array_equal(out[0, 1:], gradient.T)


def test_gradients_on_tapes_pruned_in_two_levels_are_the_whole_programs() -> None:
    # More than 16 × 16 groups: the whole tape is pruned over hulls of 16 groups for
    # several parents, each hull's tape over its groups (the last ones padded).
    from prospero_jax.renderers.gradients import gradients_at, grouped_gradients

    program = pj.load(shared_path("models/colonnade.vm"))
    rng = np.random.default_rng(3)
    points = rng.uniform(-1, 1, (6000, 3))
    cells = rng.integers(0, 700, len(points))  # ~700 groups of a few points each
    target = pj.Target()
    value, gradient = grouped_gradients(program, points, cells, target)
    expected_value, expected = gradients_at(program, *points.T, target)
    np.testing.assert_array_equal(value, expected_value)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(gradient).all()


@pytest.mark.parametrize("spread", [1 << 10, 1 << 40])  # dense cells, and a sparse key
def test_points_sort_by_cell_then_z_as_lexsort_does(spread: int) -> None:
    # grouped_gradients' order of points (one integer key, not np.lexsort): cell by cell,
    # each by z, ties in their first order; negative z and negative cells too.
    from prospero_jax.renderers.gradients import _by_cell_then_z

    rng = np.random.default_rng(5)
    cells = rng.integers(-spread, spread, 40)[rng.integers(0, 40, 5000)]
    z = rng.choice(rng.uniform(-3, 3, 900).astype(np.float32), 5000)  # with repeats
    z[:7] = [np.inf, -np.inf, 1e-40, -1e-40, 3e38, -3e38, 0.5]
    assert np.array_equal(_by_cell_then_z(cells, z), np.lexsort((z, cells)))


def test_gradients_and_normals_do_not_depend_on_where_the_chunks_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The compiled gradient runs in chunks of CHUNK points, the last one padded: cut
    # anywhere, the same values, gradients and unit normals.
    from prospero_jax.renderers import gradients

    program = pj.parse(SPHERE)
    points = np.random.default_rng(7).uniform(-1, 1, (3, 2500)).astype(np.float32)
    target = pj.Target()
    whole = gradients.gradients_at(program, *points, target)
    normals = gradients.normals_at(program, *points, target)
    monkeypatch.setattr(gradients, "CHUNK", 1024)  # three chunks, the last one padded
    cut = gradients.gradients_at(program, *points, target)
    np.testing.assert_array_equal(cut[0], whole[0])
    np.testing.assert_array_equal(cut[1], whole[1])
    np.testing.assert_array_equal(gradients.normals_at(program, *points, target), normals)


@pytest.mark.parametrize(
    ("source", "constant"),
    [
        ("z var-z\nk const 10\na mul z k\nc const 3.1\nr sub a c", True),  # a floor: 10z - 3.1
        ("x var-x\ny var-y\nk const 2\na mul k x\nb add a y\nn neg b\nr min n n", True),
        ("x var-x\nk const 4\nr div x k", True),
        ("x var-x\ny var-y\nr mul x y", False),  # partials are the other side's value
        ("x var-x\nk const 1e-35\nr div x k", False),  # 1 / k overflows float32
        ("x var-x\nk const 1e20\na mul x k\nr mul a k", False),  # x · 1e40: not finite
        ("x var-x\ny var-y\nr min x y", False),  # the partials follow which is smaller
        ("x var-x\nr sqrt x", False),
    ],
)
def test_tapes_with_the_same_gradient_everywhere(source: str, constant: bool) -> None:
    from prospero_jax.renderers.gradients import constant_gradients
    from prospero_jax.renderers.hierarchy import root_tape

    tape = root_tape(pj.parse(source), "float32")
    lengths = np.array([0, len(tape)])  # an empty tape first: never constant
    got = constant_gradients(tape, lengths, np.array([1.0, 1.0]))
    assert got.tolist() == [False, constant]


def _planes_and_balls(steep: bool = False) -> str:
    """A floor, a slanted wall and six balls (over 64 rows: normals on pruned tapes); or,
    ``steep``, instead of the floor and the wall one plane, ``10 x + z``, that leaves
    the view's depths halfway across a column of tiles (tiles of one plane with empty
    pixels), the balls moved far off (there for their rows)."""
    lines = ["x var-x", "y var-y", "z var-z", "k const 10"]
    if steep:
        lines += ["a mul x k", "out0 add a z"]
    else:
        lines += ["a mul z k", "c const 3.1", "floor sub a c", "d const 2", "e mul x d"]
        lines += ["f sub e y", "wall sub f z", "out0 min floor wall"]
    for i, (bx, by, bz) in enumerate(
        [
            (-0.5, -0.5, 0.0),
            (0.5, -0.5, 0.1),
            (-0.5, 0.5, 0.2),
            (0.5, 0.5, -0.1),
            (0, 0, 0.3),
            (0.2, -0.7, 0),
        ]
    ):
        lines += [f"cx{i} const {bx - 5 * steep}", f"dx{i} sub x cx{i}", f"xx{i} square dx{i}"]
        lines += [f"cy{i} const {by}", f"dy{i} sub y cy{i}", f"yy{i} square dy{i}"]
        lines += [f"cz{i} const {bz}", f"dz{i} sub z cz{i}", f"zz{i} square dz{i}"]
        lines += [f"s{i} add xx{i} yy{i}", f"t{i} add s{i} zz{i}", f"r{i} sqrt t{i}"]
        lines += [f"h{i} const 0.2", f"ball{i} sub r{i} h{i}", f"out{i + 1} min out{i} ball{i}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("model", ["colonnade", "planes and balls", "a steep plane and balls"])
@pytest.mark.parametrize("turn", [None, (30.0, -50.0)])
def test_tiles_on_one_plane_share_its_normal_as_evaluating_each_would(
    model: str, turn: tuple[float, float] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiles whose pruned tapes are one plane are evaluated once: their normals must be
    # what evaluating every tile gives (the colonnade's floors and walls; balls beside
    # planes, turned and not).
    from prospero_jax.renderers import heightmap_normals
    from prospero_jax.renderers.gradients import prunes_gradients

    program = (
        pj.load(shared_path("models/colonnade.vm"))
        if model == "colonnade"
        else pj.parse(_planes_and_balls(steep=model.startswith("a steep")))
    )
    rotation = None if turn is None else pj.rotation(*turn)
    assert prunes_gradients(program, pj.Target())  # the tiles' path
    monkeypatch.setattr(heightmap_normals, "dual_call_groups", lambda n: 1)  # shared at any size
    shared = pj.render_heightmap(program, 128, rotation=rotation)
    monkeypatch.setattr(heightmap_normals, "constant_gradients", lambda t, lengths, r: lengths < 0)
    each = pj.render_heightmap(program, 128, rotation=rotation)
    assert shared.normal is not None
    assert each.normal is not None
    assert np.isfinite(shared.normal).any()
    np.testing.assert_array_equal(shared.normal, each.normal)
    if model.startswith("a steep"):  # tiles of the plane half empty: NaN there, not its vector
        empty = np.isnan(shared.z)
        assert empty.any()
        assert (np.isnan(shared.normal) == empty[..., None]).all()


def test_the_leaf_kernel_lowers_a_heightmaps_squares_as_its_boxes_find_them() -> None:
    # lower_firsts: each square of columns lowered, in the kernel, to the least sample
    # index inside that its boxes find (a box searching only above what is known and at
    # most its cap's first depths), as the boxes' first inside depths reduced on the host
    # give it: squares holding several boxes, columns known (a sample index), unknown
    # (FAR) and never to search (-1), caps of 1 and of every depth, NaN values.
    from prospero_jax.evaluators.leaf_kernels import FIRSTS_CHUNK
    from prospero_jax.renderers import column_search as C
    from prospero_jax.renderers import hierarchy as H
    from prospero_jax.renderers.octree import FAR
    from prospero_jax.renderers.tile_grid import read_tiles

    program = pj.parse(HALF_NAN_SPHERE)
    target = pj.Target()
    tapes = H.root_tape(program, target.dtype)
    side, boxes, count = 8, 60, 16
    rng = np.random.default_rng(11)
    rows, cols = (rng.integers(0, 4, boxes) * side for _ in range(2))  # 16 squares
    front = H.Frontier(
        tapes.take(np.tile(np.arange(len(tapes)), boxes)), np.full(boxes, len(tapes)),
        rows, cols, side,
    )  # fmt: skip
    xs = np.linspace(-1, 1, 4 * side).astype(np.float32)
    zs = np.linspace(1, -1, count).astype(np.float32)
    tops = rng.integers(0, 5, boxes).astype(np.int32) * count
    caps = np.where(rng.random(boxes) < 0.3, 1, count).astype(np.int32)
    first = rng.choice([FAR, -1, 3, 20, 41, 70], (4 * side, 4 * side)).astype(np.int32)
    # What each box finds, as sample indices: every depth searched, kept where its cap
    # lets the search reach (depths go a chunk at a time: a cap of 1 searches the first).
    found = C.leaf_firsts(front, xs, xs[::-1].copy(), zs, target)
    reach = -(-caps // FIRSTS_CHUNK) * FIRSTS_CHUNK
    found = np.where(found < reach[:, None, None], found + tops[:, None, None], FAR)
    want = first.copy()
    for box in range(boxes):
        at = np.s_[rows[box] : rows[box] + side, cols[box] : cols[box] + side]
        want[at] = np.minimum(want[at], found[box])
    lowered = first.copy()
    calls = C.lower_firsts(front, xs, xs[::-1].copy(), zs, target, lowered, tops, caps)
    np.testing.assert_array_equal(lowered, want)
    assert (lowered != first).any()
    assert (want[first == -1] == -1).all()
    (r, c, after), *_ = calls  # the squares lowered, as painted
    assert len(r) == len(set(zip(rows.tolist(), cols.tolist(), strict=True))) < boxes
    np.testing.assert_array_equal(after, read_tiles(lowered, side, r, c))


NAN_AND_MAX = HALF_NAN_SPHERE + "c const 0.3\nw sub z c\nm max out w\n"
# In a core of radius 0.5 the max is its immediate, -0.3, and the value z: boxes there
# keep the max as a const row.
CORE = (
    "x var-x\ny var-y\nz var-z\nxx mul x x\nyy mul y y\nzz mul z z\ns1 add xx yy\n"
    "s2 add s1 zz\nr sqrt s2\nc const 0.8\ns sub r c\nk const -0.3\nm max s k\n"
    "h const 0.3\nt add z h\nout add m t\n"
)
SEARCHED = {
    "colonnade": lambda: pj.load(shared_path("models/colonnade.vm")),
    "capped cylinder": lambda: pj.parse(CAPPED_CYLINDER),
    "NaN and max": lambda: pj.parse(NAN_AND_MAX),
    "a max's immediate": lambda: pj.parse(CORE),
}


def _searched(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The counts each split_search call returns, from now on."""
    from prospero_jax.renderers import octree

    counts: list[np.ndarray] = []
    split_search = octree.split_search

    def counted(*args, **kw):  # type: ignore[no-untyped-def]
        lowered, found = split_search(*args, **kw)
        counts.append(found)
        return lowered, found

    monkeypatch.setattr(octree, "split_search", counted)
    return counts


@pytest.mark.parametrize("turned", [False, True])
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", sorted(SEARCHED))
def test_the_last_level_and_its_leaves_in_one_call_find_what_the_leaf_calls_find(
    model: str, dtype: str, exact: bool, turned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # split_search: a heightmap's last level (parents of short tapes) pruned and its leaf
    # boxes searched in one kernel call, children evaluated on their parents' rows: the
    # first samples of prune_level then the leaf kernel's calls, bit for bit (boxes
    # proved inside, boxes searched, tapes reading no z, const rows of a max's immediate,
    # NaN).
    from prospero_jax.renderers import octree

    program = SEARCHED[model]()
    options = {
        "target": pj.Target(dtype=dtype, exact=exact, tier="kernels"),
        "rotation": pj.rotation(30.0, -20.0) if turned else None,
        "normals": False,
    }
    counts = _searched(monkeypatch)
    together = pj.render_heightmap(program, 128, **options).z
    monkeypatch.setattr(octree, "SEARCH_ROWS", 0)
    apart = pj.render_heightmap(program, 128, **options).z
    np.testing.assert_array_equal(together, apart)
    proved, ambiguous, searched, rows, chunks = np.sum(counts, axis=0)
    assert searched > 0
    assert rows >= searched
    assert chunks >= searched
    assert ambiguous >= searched
    assert proved > 0 or model == "colonnade"  # its boxes proved inside are larger
    assert 0.05 < np.isfinite(together).mean() < 0.99  # a picture, not a blank


def test_split_searchs_boxes_whose_tapes_read_no_z_search_one_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As the leaf kernel's (above): a box whose kept rows read no z searches the first
    # chunk of its depths only, and finds what every depth would.
    from prospero_jax.evaluators.tape import Tapes

    program = pj.parse(CAPPED_CYLINDER)
    target = pj.Target(tier="kernels")
    counts = _searched(monkeypatch)
    capped = pj.render_heightmap(program, 64, normals=False, target=target).z
    chunks = sum(int(found[4]) for found in counts)
    counts.clear()
    monkeypatch.setattr(Tapes, "z_reads", lambda self: np.ones(len(self), bool))
    every = pj.render_heightmap(program, 64, normals=False, target=target).z
    np.testing.assert_array_equal(capped, every)
    assert 0 < chunks < sum(int(found[4]) for found in counts)


@settings(max_examples=examples(50), deadline=None)
@given(
    st.lists(st.integers(0, 12), max_size=60).map(sorted),
    st.integers(1, 8),
    st.integers(1, 5),
)
def test_split_search_calls_hold_at_most_their_parents_and_squares(
    block: list[int], parents: int, squares: int
) -> None:
    # Parents sorted by square, cut into calls: every parent once, in order, no call over
    # either budget, and a call cut short only where the next parent would pass one.
    from prospero_jax.renderers.column_search import _search_calls

    blocks = np.array(block, np.int64)
    calls = _search_calls(blocks, parents, squares)
    assert [g for call in calls for g in range(*call)] == list(range(len(block)))
    for (g0, g1), after in itertools.zip_longest(calls, calls[1:]):
        held = set(block[g0:g1])
        assert 0 < g1 - g0 <= parents
        assert len(held) <= squares
        if after is not None:  # the next parent did not fit
            assert g1 - g0 == parents or (len(held) == squares and block[g1] not in held)


def test_a_heightmaps_leaf_calls_are_among_the_kernels_readied_before_its_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A frame readies its kernels at once before its first level (compiled, or loaded,
    # together); a leaf call of a shape not among them would compile inside the walk, its
    # time counted as the leaves' interpreting (what buys the compiled tier early).
    from prospero_jax.runtime import executables

    prepared: set[object] = set()
    called: list[tuple[str, object]] = []
    prepare, call = executables.prepare, executables.call

    def preparing(jobs, device):  # type: ignore[no-untyped-def]
        prepared.update(executables._quick(k, a, s, device) for k, a, s in jobs)
        return prepare(jobs, device)

    def calling(kernel, args, device, **static):  # type: ignore[no-untyped-def]
        called.append((kernel.__name__, executables._quick(kernel, args, static, device)))
        return call(kernel, args, device, **static)

    monkeypatch.setattr(executables, "prepare", preparing)
    monkeypatch.setattr(executables, "call", calling)
    program = pj.load(shared_path("models/colonnade.vm"))
    pj.render_heightmap(program, 128, target=pj.Target(tier="kernels"), normals=False)
    leaves = [key for name, key in called if name in ("leaf_kernel", "split_search_kernel")]
    assert {name for name, _ in called} >= {"leaf_kernel", "split_search_kernel"}
    assert all(key in prepared for key in leaves)
