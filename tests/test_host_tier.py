"""The host tier (evaluators/host_cull.py) against the XLA kernels it stands in for, and the
rule that picks between them (renderers/hierarchy.tier).

The host tier must give the kernels' outputs: the same pruned tapes row for row, the same
images bit for bit (XLA:CPU's flushing of subnormals included), on prospero, the shared
models and random sign programs. ``balance_extrema``, which makes sign programs shallow
enough for it, must keep every value bit for bit.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prospero_jax as pj
from prospero_jax.evaluators import host_cull
from prospero_jax.ir import passes
from prospero_jax.ir.ops import OPCODE
from prospero_jax.renderers import hierarchy
from prospero_jax.renderers.octree import walk
from prospero_jax.renderers.view import Target
from tests.conftest import shared_path
from tests.programs import examples, specialisable

HOST, KERNELS = Target(tier="host"), Target(tier="kernels")


def tiers_agree(program: pj.Program, size: int, **view: object) -> np.ndarray:
    host = pj.render(program, size, mode="culled", target=HOST, **view)  # type: ignore[arg-type]
    kernels = pj.render(program, size, mode="culled", target=KERNELS, **view)  # type: ignore[arg-type]
    assert np.array_equal(host, kernels)
    return host


def test_prospero_prunes_alike_row_for_row(prospero: pj.Program) -> None:
    sign = pj.specialise(prospero)
    side = 512
    xs = ((np.arange(side) + 0.5) / side * 2 - 1).astype(np.float32)
    fronts: list[list[hierarchy.Frontier]] = [[], []]
    for target, leaves in zip((HOST, KERNELS), fronts, strict=True):
        level_splits = [(k, 1) for k in hierarchy.splits(side // hierarchy.LEAF_SIDE)]
        walk(
            sign, xs, xs[::-1].copy(), np.zeros(1, np.float32), target, lambda *a: None,
            lambda part, _, leaves=leaves: leaves.append(part), leaf=hierarchy.LEAF_SIDE,
            level_splits=level_splits, leaf_thick=1,
        )  # fmt: skip
    [host], [kernels] = fronts
    assert host.depth is not None
    assert kernels.depth is None
    for field in ("lengths", "rows", "cols"):
        assert np.array_equal(getattr(host, field), getattr(kernels, field))
    for a, b in zip(host.tapes[:3], kernels.tapes[:3], strict=True):
        assert np.array_equal(a, b)


PARENTS = 8


def test_prune_layers_is_the_prune_kernel(prospero: pj.Program) -> None:
    """One level, every output: intervals, inside, lengths, emit codes, operands."""
    sign = pj.specialise(prospero)
    tapes = hierarchy.root_tape(sign, "float32")
    depth = hierarchy.host_depths(sign, "float32")
    assert depth is not None
    rng = np.random.default_rng(7)
    corners = rng.uniform(-1, 1, (PARENTS, 2, 16)).astype(np.float32)
    boxes = np.stack(
        [corners[:, 0], corners[:, 0] + 0.01, corners[:, 1], corners[:, 1] + 0.02,
         np.zeros_like(corners[:, 0]), np.zeros_like(corners[:, 0])], axis=1,
    )  # fmt: skip
    lengths = np.full(PARENTS, len(tapes))
    repeated = tapes.take(np.tile(np.arange(len(tapes)), PARENTS))
    ours = host_cull.prune_layers(repeated, lengths, np.tile(depth, PARENTS), boxes)
    kernel = hierarchy.prune_level(repeated, lengths, boxes, jax.devices()[0], len(tapes))
    for name in ("inside", "kept", "emit", "new_a", "new_b"):
        assert np.array_equal(getattr(ours, name), getattr(kernel, name)), name
    ambiguous = ~kernel.inside & (kernel.lo < 0)
    assert ambiguous.any()
    assert kernel.inside.any()
    # The host's bounds are the kernel's, widened by at most the flushing margin.
    assert np.all(ours.lo <= kernel.lo)
    assert np.all(ours.hi >= kernel.hi)
    assert np.allclose(ours.lo, kernel.lo, rtol=0, atol=1e-20)


def test_prospero_images_agree(prospero: pj.Program) -> None:
    tiers_agree(prospero, 512)
    tiers_agree(prospero, 200, region=(-0.3, 0.5, -0.9, 0.1))


@pytest.mark.parametrize("name", ["models/hi.vm", "models/quarter.vm"])
def test_shared_drawings_agree(name: str) -> None:
    tiers_agree(pj.load(shared_path(name)), 256)


@pytest.mark.parametrize("name", ["bear", "colonnade", "tanglecube"])
def test_shared_solids_agree_at_depth_slices(name: str) -> None:
    program = pj.load(shared_path(f"models/{name}.vm"))
    for z in (-0.5, 0.0, 0.4):
        tiers_agree(program, 96, z=z)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specialisable())
def test_random_sign_programs_agree(program: pj.Program) -> None:
    tiers_agree(program, 64)


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specialisable(solid=True))
def test_random_solids_agree(program: pj.Program) -> None:
    for z in (-0.6, 0.35):
        tiers_agree(program, 32, z=z)


@pytest.mark.parametrize(
    "text",
    [
        "x var-x\nr affine 1e-39 0 0 0",  # a subnormal coefficient: XLA reads it as 0
        "x var-x\nr affine 1e-20 0 0 -1e-39",
        "x var-x\ny var-y\nr quadric 1e-30 1e-5 0 0 0 1 0 1 0 -1e-38 0 0 0 0 0 0",
        "x var-x\ny var-y\na affine 1 0 0 0\nb affine 1e-39 1e-39 0 0\nr max a b",
    ],
)
def test_subnormal_values_are_flushed_as_xla_does(text: str) -> None:
    """Where NumPy's value is subnormal and XLA:CPU's is a flushed 0, the host tier draws
    XLA's pixel (an atom that close to 0 is evaluated again with flushing)."""
    program = pj.parse(text)
    assert hierarchy.host_depths(program, "float32") is not None
    tiers_agree(program, 64)


@pytest.mark.parametrize(
    "rest", ["", "\nb affine 1 0 0 0\nr2 min r b", "\nb affine 1 0 0 0\nr2 max r b"]
)
def test_nan_pixels_are_drawn_as_xla_draws_them(rest: str) -> None:
    """A quadric whose squares overflow to +inf and -inf is NaN where both do; NaN wins
    a min and a max (its sign class in the leaves), as in XLA."""
    program = pj.parse("x var-x\ny var-y\nr quadric 3e38 2 0 0 0 -3e38 0 2 0 0 0 0 0 0 0 0" + rest)
    assert hierarchy.host_depths(program, "float32") is not None
    values = pj.render(program, 64, mode="culled", target=KERNELS)
    assert values.any()
    assert not values.all()
    tiers_agree(program, 64)


def test_the_pruner_widens_bounds_past_flushed_values() -> None:
    """A bound NumPy computes as a subnormal is never trusted to decide a tile."""
    program = pj.parse("x var-x\nr affine 1e-39 0 0 -1e-45")
    tapes = hierarchy.root_tape(program, "float32")
    boxes = np.array([[[0.5], [0.6], [0.0], [0.1], [0.0], [0.0]]], np.float32)
    boxes = np.repeat(boxes, 4, axis=2)
    out = host_cull.prune_layers(
        tapes, np.array([len(tapes)]), np.zeros(len(tapes), np.int32), boxes
    )
    assert not out.inside.any()
    assert out.kept.all()


def test_deep_or_general_programs_go_to_the_kernels(prospero: pj.Program) -> None:
    assert hierarchy.host_depths(prospero, "float32") is None  # as written: sqrt, mul, ...
    chain = "\n".join(
        ["x var-x"] + [f"_{i} min x x" if i == 0 else f"_{i} max _{i - 1} x" for i in range(80)]
    )
    assert hierarchy.host_depths(pj.parse(chain), "float32") is None  # 80 deep
    assert hierarchy.host_depths(pj.specialise(prospero), "float32") is not None
    with pytest.raises(ValueError, match="tier must be one of"):
        Target(tier="fast")


def test_auto_rents_the_host_tier_until_it_has_paid_for_the_kernels(
    monkeypatch: pytest.MonkeyPatch, prospero: pj.Program
) -> None:
    sign = pj.specialise(prospero)
    jobs = hierarchy._kernels((16, 16, 4), 100, "float32", 32, 0)
    auto = Target()
    monkeypatch.setattr(hierarchy._executables, "readiness", lambda jobs, device: "stored")
    monkeypatch.setitem(hierarchy._rent, "seconds", 0.0)
    assert hierarchy.tier(sign, auto, jobs) == "host"
    assert hierarchy.tier(sign, auto, jobs, sweep=True) == "kernels"  # a heightmap's slab
    assert hierarchy.tier(sign, HOST, jobs, sweep=True) == "host"
    assert hierarchy.tier(prospero, auto, jobs) == "kernels"  # not a sign program
    assert hierarchy.tier(sign, KERNELS, jobs) == "kernels"
    monkeypatch.setitem(hierarchy._rent, "seconds", hierarchy.KERNEL_PRICE["stored"])
    assert hierarchy.tier(sign, auto, jobs) == "kernels"  # the rent paid the price
    assert hierarchy.tier(sign, HOST, jobs) == "host"
    monkeypatch.setattr(hierarchy._executables, "readiness", lambda jobs, device: "missing")
    assert hierarchy.tier(sign, auto, jobs) == "host"
    monkeypatch.setattr(hierarchy._executables, "readiness", lambda jobs, device: "ready")
    monkeypatch.setitem(hierarchy._rent, "seconds", 0.0)
    assert hierarchy.tier(sign, auto, jobs) == "kernels"


def test_a_host_frame_pays_rent(prospero: pj.Program, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(hierarchy._rent, "seconds", 0.0)
    pj.render(prospero, 128, mode="culled", target=HOST)
    assert hierarchy._rent["seconds"] > 0


# balance_extrema: exact, shallow, idempotent.


@st.composite
def chains(draw: st.DrawFn) -> pj.Program:
    """Programs with chains of min and max over random shapes (and ops between them)."""
    rows = [f"_{i} {'var-x' if i == 0 else 'var-y'}" for i in range(2)]
    names = ["_0", "_1"]
    for i in range(2, draw(st.integers(4, 40))):
        kind = draw(st.sampled_from(["min", "max", "min", "max", "mul", "sub", "const"]))
        if kind == "const":
            rows.append(f"_{i} const {draw(st.floats(-2, 2, width=32))!r}")
        else:
            a, b = (
                draw(st.sampled_from(names[-4:] if draw(st.booleans()) else names))
                for _ in range(2)
            )
            rows.append(f"_{i} {kind} {a} {b}")
        names.append(f"_{i}")
    return pj.parse("\n".join(rows))


@settings(max_examples=examples(60), deadline=None)
@given(chains())
def test_balancing_keeps_every_value(program: pj.Program) -> None:
    balanced = passes.balance_extrema(program)
    assert len(balanced) == len(program)
    assert len(set(balanced.ids)) == len(balanced.ids)
    assert passes.balance_extrema(balanced) is balanced
    assert passes.depth(balanced) <= passes.depth(program)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1.5, 1.5, (2, 500))
    with np.errstate(all="ignore"):
        a, b = pj.reference.evaluate(program, x, y), pj.reference.evaluate(balanced, x, y)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)])


def test_prosperos_union_becomes_shallow(prospero: pj.Program) -> None:
    sign = pj.specialise(prospero)
    assert passes.depth(sign) <= 24  # the chain of 670 unions is a tree of depth ~10
    mins = np.flatnonzero(sign.opcodes == OPCODE["min"])
    assert len(mins) > 600  # the letters' union (their polygons are atoms)
