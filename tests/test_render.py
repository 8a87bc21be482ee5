"""Renders against the oracle: golden images, prospero in both precisions, tiling, caching."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.renderers import brute as _render

HI_32 = """\
................................
................##..............
................##..............
................##..............
................##.........##...
................##.........##...
................##..............
................##..#......##...
................#######....##...
................###...##...##...
................##.....#...##...
................##.....##..##...
................##.....##..##...
................##.....##..##...
................##.....##..##...
................##.....##..##...
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
"""

QUARTER_32 = """\
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
................................
.....###########................
.....###########................
.....###########................
......##########................
......##########................
.......#########................
.......#########................
........########................
.........#######................
...........#####................
.............###................
................................
................................
................................
................................
................................
"""


def as_text(image: np.ndarray) -> str:
    return "".join("".join("#" if v else "." for v in row) + "\n" for row in image)


@pytest.mark.parametrize(("model", "golden"), [("hi", HI_32), ("quarter", QUARTER_32)])
def test_golden_32px_renders(model: str, golden: str, request: pytest.FixtureRequest) -> None:
    program = request.getfixturevalue(model)
    assert as_text(pj.reference.render(program, 32)) == golden
    for mode in ("brute", "culled"):
        assert as_text(pj.render(program, 32, mode=mode)) == golden
        assert as_text(pj.render(program, 32, mode=mode, dtype="float64")) == golden


def test_axes_are_the_challenges_linspace_meshgrid() -> None:
    s = np.linspace(-1, 1, 1000)
    x, y = np.meshgrid(s, -s)
    xs, ys = pj.reference.axes(1000)
    assert np.array_equal(xs[None, :].repeat(1000, 0), x)
    assert np.array_equal(ys[:, None].repeat(1000, 1), y)


@pytest.mark.slow
def test_prospero_float64_matches_oracle_exactly(
    prospero: pj.Program, oracle_values: dict[int, np.ndarray]
) -> None:
    image = pj.render(prospero, 1024, dtype="float64", mode="brute")
    assert np.count_nonzero(image != pj.reference.to_pixels(oracle_values[1024])) == 0


@pytest.mark.slow
@pytest.mark.parametrize("size", [256, 512, 1024])
def test_prospero_float32_differs_only_where_the_value_is_tiny(
    prospero: pj.Program, oracle_values: dict[int, np.ndarray], size: int
) -> None:
    image = pj.render(prospero, size, mode="brute")
    values = oracle_values[size]
    differ = image != pj.reference.to_pixels(values)
    # A float32 evaluation can only flip a pixel whose float64 value is within its
    # rounding error of 0; anything else is a bug.
    assert np.all(np.abs(values[differ]) < 1e-5), np.abs(values[differ]).max()
    assert np.count_nonzero(differ) <= 10


@pytest.mark.slow
def test_prospero_unsealed_as_accelerators_render_it_keeps_the_default_contract(
    prospero: pj.Program, oracle_values: dict[int, np.ndarray]
) -> None:
    # Off CPU, brute force leaves the closure's values unsealed (Target.seals): XLA may
    # rewrite across instructions. On CPU it seals; this renders as an accelerator does.
    target = pj.Target()
    assert target.seals
    image = _render.render_tiles(_render.jitted_kernel(prospero, False), pj.View(256), target)
    values = oracle_values[256]
    differ = image != pj.reference.to_pixels(values)
    assert np.all(np.abs(values[differ]) < 1e-5), np.abs(values[differ]).max()


def test_brute_force_seals_on_cpu_and_where_exact_asks() -> None:
    class Accelerator:
        platform = "gpu"

    assert pj.Target().seals
    assert pj.Target(exact=True).seals
    assert not pj.Target(device=Accelerator()).seals  # type: ignore[arg-type]
    assert pj.Target(device=Accelerator(), exact=True).seals  # type: ignore[arg-type]


def test_an_unsealed_field_gives_the_sealed_values_within_rounding(hi: pj.Program) -> None:
    x, y = np.meshgrid(np.linspace(-1, 1, 64, dtype=np.float32), np.linspace(-1, 1, 64))
    sealed = np.asarray(jax.jit(pj.to_function(hi))(x, y))
    unsealed = np.asarray(jax.jit(pj.to_function(hi, seal=False))(x, y))
    assert unsealed.dtype == sealed.dtype == np.float32
    np.testing.assert_allclose(unsealed, sealed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("size", "tile"), [(1, 8), (37, 16), (100, 32), (64, 64)])
def test_tiling_covers_every_size_exactly(size: int, tile: int) -> None:
    demo = pj.shapes.demo_program()
    expected = pj.reference.render(demo, size)
    assert np.array_equal(pj.render(demo, size, tile=tile, mode="brute"), expected)


@pytest.mark.parametrize("mode", ["brute", "culled"])
def test_region_and_orientation(mode: str) -> None:
    # Inside only where x < 0 and y > 0: the top-left quadrant of the image.
    program = pj.parse("x var-x\ny var-y\nny neg y\nr max x ny")
    image = pj.render(program, 8, region=(-2.0, 2.0, -2.0, 2.0), mode=mode)
    assert image[:3, :3].all()
    assert not image[5:, :].any()
    assert not image[:, 5:].any()
    shifted = pj.render(program, 8, region=(-3.0, -1.0, 1.0, 3.0), mode=mode)  # all of it inside
    assert shifted.all()


@pytest.mark.parametrize("mode", ["brute", "culled"])
def test_z_slices_a_3d_program(mode: str) -> None:
    ball = pj.parse(
        "x var-x\ny var-y\nz var-z\nxx square x\nyy square y\nzz square z\n"
        "s add xx yy\nt add s zz\nr const 0.25\nd sub t r"
    )
    assert pj.render(ball, 16, z=0.0, mode=mode).any()
    assert not pj.render(ball, 16, z=0.6, mode=mode).any()


def test_one_compilation_serves_every_size_and_region(hi: pj.Program) -> None:
    kernel = _render.jitted_kernel(hi, pj.Target().seals)  # the one pj.render uses
    before = kernel._cache_size()
    for size, region in [(256, (-1.0, 1.0, -1.0, 1.0)), (300, (0.0, 1.0, 0.0, 1.0)), (512, None)]:
        pj.render(hi, size, region=region or pj.reference.DEFAULT_REGION, mode="brute")
    assert kernel._cache_size() - before <= 1  # one tile shape: at most one new compile
    assert kernel._cache_size() >= 1  # and the renders compiled this kernel, no other


def test_bad_render_arguments_are_value_errors(hi: pj.Program) -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        pj.render(hi, 8, dtype="float16")
    with pytest.raises(ValueError, match="no 'tpu' device available"):
        pj.render(hi, 8, device="tpu")
    with pytest.raises(ValueError, match="image size must be from 1 to"):
        pj.render(hi, 0)
    with pytest.raises(ValueError, match="mode must be one of"):
        pj.render(hi, 8, mode="fast")


def test_render_on_an_explicit_device(hi: pj.Program) -> None:
    device = jax.devices("cpu")[0]
    assert np.array_equal(pj.render(hi, 16, device=device), pj.render(hi, 16, device="cpu"))


def test_progress_reports_every_tile(hi: pj.Program) -> None:
    seen: list[tuple[int, int]] = []
    pj.render(hi, 64, tile=16, mode="brute", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(k, 16) for k in range(1, 17)]
    seen.clear()
    pj.render(hi, 256, mode="culled", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3, 3)  # levels 256 → 64 → 32 (4 × 4, then 2 × 2), then the leaves


def test_the_library_owns_the_memory_policy(quarter: pj.Program, tmp_path: Path) -> None:
    """Too large for memory is a clear error from render (not a silent 4 GB array), and
    render_file streams exactly what render would refuse, or when asked to."""
    side = int(pj.MEMORY_LIMIT**0.5)
    with pytest.raises(ValueError, match="render_to_file"):
        pj.render(quarter, side + 1)
    assert pj.streams(pj.View(side + 1), None)
    assert not pj.streams(pj.View(side), None)
    assert pj.streams(pj.View(64), band_rows=16)
    band = pj.render(quarter, pj.View(side + 1, rows=(0, 8)), mode="brute")  # a band fits
    assert band.shape == (8, side + 1)
    done = pj.render_file(quarter, tmp_path / "q.pgm", pj.View(64), pj.Target(), band_rows=16)
    assert done.streamed is not None
    assert done.streamed.bands == 4
    assert np.array_equal(pj.read_pgm(tmp_path / "q.pgm"), pj.reference.render(quarter, 64))


def test_view_and_target_are_validated_once(quarter: pj.Program) -> None:
    with pytest.raises(pj.InvalidView, match="region") as caught:
        pj.View(64, region=(1, -1, -1, 1))
    assert caught.value.field == "region"
    with pytest.raises(ValueError, match="in the View, not beside it"):
        pj.render(quarter, pj.View(64), z=0.5)
    with pytest.raises(TypeError, match="unexpected keyword arguments: regoin"):
        pj.render(quarter, 64, regoin=(0, 1, 0, 1))  # type: ignore[call-arg]
    view = pj.View(64, region=(0, 1, 0, 1))
    same = pj.render(quarter, 64, region=(0, 1, 0, 1), dtype="float64")
    assert np.array_equal(pj.render(quarter, view, target=pj.Target.resolve("float64")), same)
