"""Solids as first-class views: one :class:`View` (size, region, depth, zrange, rotation)
taken by ``render``, ``render_heightmap``, ``surface_depth`` and ``mesh``; the rotation
applied once (the program posed, the view passed on without it); the viewer on the public
API only."""

from __future__ import annotations

import ast
from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.ir.passes import transform_inputs
from prospero_jax.renderers.mesh import volume
from tests.conftest import ROOT, shared_path
from tests.test_mesh import edges

#: A ball of radius 0.6 centred off every axis, so a turn moves it.
BALL = pj.parse(
    "x var-x\ny var-y\nz var-z\na const 0.2\nb const -0.1\nc const 0.15\nr const 0.6\n"
    "dx sub x a\ndy sub y b\ndz sub z c\ns1 square dx\ns2 square dy\ns3 square dz\n"
    "t1 add s1 s2\nt2 add t1 s3\nn sqrt t2\nv sub n r"
)
CENTRE = np.array([0.2, -0.1, 0.15])
TURN = pj.rotation(30, -50)


def turned_top(view: pj.View) -> tuple[np.ndarray, np.ndarray]:
    """The top of BALL turned by TURN over ``view``'s pixels (its centre is TURNᵀ · CENTRE
    in the view's frame), and the pixels well inside its outline."""
    seen = TURN.T @ CENTRE
    x, y = np.meshgrid(*view.axes())
    q = 0.36 - (x - seen[0]) ** 2 - (y - seen[1]) ** 2
    inside = q > 0.02
    return seen[2] + np.sqrt(np.where(inside, q, 0)), inside


def test_a_views_fields_are_checked_once_and_named() -> None:
    view = pj.View(64, depth=16, zrange=(-0.5, 1.5), rotation=TURN)
    assert view.samples == 16
    np.testing.assert_array_equal(view.zs(), np.linspace(1.5, -0.5, 16))
    assert pj.View(64).samples == 64
    assert isinstance(view.rotation, tuple)  # held immutable, hashable
    assert hash(view) == hash(pj.View(64, depth=16, zrange=(-0.5, 1.5), rotation=TURN))
    for fields, named in [
        ({"depth": 1}, "depth"),
        ({"zrange": (1, 1)}, "zrange"),
        ({"zrange": (0, np.nan)}, "zrange"),
        ({"rotation": np.eye(3) * 2}, "rotation"),
        ({"rotation": "up"}, "rotation"),
    ]:
        with pytest.raises(pj.InvalidView) as err:
            pj.View(32, **fields)
        assert err.value.field == named


def test_a_turned_heightmap_is_the_posed_programs_in_either_call_form() -> None:
    view = pj.View(40, depth=24, rotation=TURN)
    by_view = pj.render_heightmap(BALL, view)
    by_keywords = pj.render_heightmap(BALL, 40, 24, rotation=TURN)
    posed = pj.render_heightmap(transform_inputs(BALL, TURN), 40, 24)
    for a, b in [(by_view, by_keywords), (by_view, posed)]:
        np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(by_view.normal, by_keywords.normal)
    # The normals are the program's gradient at the turned points, turned back (not the
    # posed program's, which would compile anew for every view): the same up to rounding.
    np.testing.assert_allclose(by_view.normal, posed.normal, atol=1e-5)
    top, inside = turned_top(view)
    assert np.all(np.isfinite(by_view.z[inside]))
    assert np.max(np.abs(by_view.z - top)[inside]) <= 2 / 23 + 1e-6  # within a sample
    with pytest.raises(ValueError, match="in the View, not beside it"):
        pj.render_heightmap(BALL, view, rotation=TURN)
    with pytest.raises(ValueError, match="in the View, not beside it"):
        pj.render_heightmap(BALL, view, 12)
    with pytest.raises(pj.InvalidView, match="give no rows"):
        pj.render_heightmap(BALL, pj.View(32, rows=(0, 8)))


def test_a_heightmap_over_a_zrange_samples_it_top_first() -> None:
    view = pj.View(32, depth=33, zrange=(-0.5, 1.5))
    z = pj.render_heightmap(BALL, view, normals=False).z
    found = z[np.isfinite(z)]
    assert found.max() <= 1.5
    assert np.isin(found.astype(np.float32), view.zs().astype(np.float32)).all()
    # The ball's top is at 0.75: found within a sample of it.
    assert abs(np.nanmax(z) - 0.75) <= 2 / 32 + 1e-6


def test_surface_depth_of_a_turned_view_is_the_turned_surfaces() -> None:
    view = pj.View(32, depth=32, rotation=TURN)
    depth_of = pj.surface_depth(BALL, view)
    z = np.asarray(depth_of(jnp.asarray(BALL.constants, jnp.float32)))
    top, inside = turned_top(view)
    assert np.max(np.abs(z - top)[inside]) < 1e-4  # Newton on the turned field


def test_a_turned_2d_render_is_the_posed_programs_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    # Brute force draws the posed program itself; culling draws the source's sign program
    # turned (a new turn specialises nothing), which keeps the image contract: the posed
    # program's float64 oracle wherever its value is 1e-5 or more from 0.
    from prospero_jax.renderers import render

    colonnade = pj.load(shared_path("models/colonnade.vm"))
    view = pj.View(96, z=0.1, rotation=TURN)
    posed = transform_inputs(colonnade, TURN)
    brute = pj.render(colonnade, view, mode="brute")
    np.testing.assert_array_equal(brute, pj.render(posed, 96, z=0.1, mode="brute"))
    pj.render(colonnade, replace(view, rotation=pj.rotation(10, 5)), mode="culled")
    monkeypatch.setattr(render, "specialise", lambda p: pytest.fail("specialised a turn"))
    culled = pj.render(colonnade, view, mode="culled")
    values = pj.reference.values(posed, 96, z=0.1)
    sure = np.abs(values) >= 1e-5
    np.testing.assert_array_equal(culled[sure], np.where(values < 0, 255, 0)[sure])
    assert 0.05 < (culled > 0).mean() < 0.95
    with pytest.raises(pj.InvalidView, match="render_batch"):
        pj.render_batch(colonnade, colonnade.constants[None], view)


def test_a_mesh_of_a_box_that_is_not_a_cube() -> None:
    view = pj.View(40, region=(-1.0, 1.0, -0.9, 0.9), depth=30, zrange=(-0.7, 1.0))
    surface = pj.mesh(BALL, view)
    undirected, once = edges(surface.faces)
    assert (undirected == 2).all()
    assert (once == 1).all()
    assert volume(surface) == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.02)
    assert np.abs(pj.reference.evaluate(BALL, *surface.vertices.T)).max() < 1e-5
    low = surface.vertices.min(axis=0)
    assert low[2] >= -0.7 - 1e-9  # inside the box
    # A cube's view is the resolution-and-bounds form, vertex for vertex.
    cube = pj.mesh(BALL, pj.View(24, (-1.0, 1.0, -1.0, 1.0), depth=24, zrange=(-1.0, 1.0)))
    by_bounds = pj.mesh(BALL, 24, bounds=(-1.0, 1.0))
    np.testing.assert_array_equal(cube.vertices, by_bounds.vertices)
    np.testing.assert_array_equal(cube.faces, by_bounds.faces)
    with pytest.raises(ValueError, match="not beside it"):
        pj.mesh(BALL, view, bounds=(-1, 1))


def test_a_turned_mesh_is_in_the_views_frame() -> None:
    surface = pj.mesh(BALL, pj.View(32, rotation=TURN))
    moved = surface.vertices @ TURN.T  # back to the model's frame: on the ball
    assert np.abs(np.linalg.norm(moved - CENTRE, axis=1) - 0.6).max() < 1e-4
    centre = (surface.vertices.max(axis=0) + surface.vertices.min(axis=0)) / 2
    np.testing.assert_allclose(centre, TURN.T @ CENTRE, atol=0.02)


def test_the_viewer_uses_only_the_public_api() -> None:
    for path in sorted((ROOT / "viewer").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module in ("prospero_jax",) or not node.module.startswith(
                    "prospero_jax"
                ), f"{path.name}: from {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name == "prospero_jax" or not alias.name.startswith(
                        "prospero_jax."
                    ), f"{path.name}: import {alias.name}"


def test_a_solid_to_a_file_in_one_call_checked_before_any_work(tmp_path, monkeypatch) -> None:
    # render3d and mesh are one library call each; a wrong path or look fails before the
    # solid is evaluated (the renderers would raise if they were reached).
    from prospero_jax.io import mesh_file, output

    view, where = pj.View(24, depth=20), pj.Target()
    done = pj.render_heightmap_file(BALL, tmp_path / "ball.png", view, where, look="lit")
    assert done.written
    assert (tmp_path / "ball.png").is_file()
    assert done.inside == pytest.approx(np.pi * 0.36 / 4, abs=0.05)  # the disc's share
    surface = pj.mesh_file(BALL, tmp_path / "ball.ply", 16)
    assert (tmp_path / "ball.ply").stat().st_size > 12 * len(surface.faces) > 0

    def unreachable(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated before the arguments were checked")

    monkeypatch.setattr(output, "render_heightmap", unreachable)
    monkeypatch.setattr(mesh_file, "mesh", unreachable)
    images = [
        ("b.gif", "lit", ".gif"),
        ("b.pgm", "normals", "colour"),
        ("b.png", "shiny", "look must be one of"),
        ("no/b.png", "lit", "does not exist"),
    ]
    for name, look, says in images:
        with pytest.raises(ValueError, match=says):
            pj.render_heightmap_file(BALL, tmp_path / name, view, where, look=look)
    for name, says in [("b.dxf", ".dxf"), ("no/b.stl", "does not exist")]:
        with pytest.raises(ValueError, match=says):
            pj.mesh_file(BALL, tmp_path / name, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ball.ply", "ball.png"]


def test_a_target_takes_a_count_of_devices() -> None:
    one = pj.Target.resolve("float32", "cpu", 1)
    assert one.devices == ()
    assert one.device.platform == "cpu"
    with pytest.raises(ValueError, match=r"devices 2: 1 cpu device\(s\) here"):
        pj.Target.resolve("float32", "cpu", 2)
    with pytest.raises(ValueError, match="devices 0"):
        pj.Target.resolve("float32", "cpu", 0)


def test_every_turned_view_of_a_solid_shares_its_compiled_shape() -> None:
    # The compiled tier compiles per shape; a view turned by a multiple of 90° has matrix
    # entries 0 and ±1 equal to constants of the program, which must not merge into a
    # shape of its own (a compile in the middle of turning the viewer).
    from prospero_jax.evaluators.interval import to_shaped_intervals
    from prospero_jax.evaluators.lower import to_shaped

    program = pj.load(shared_path("models/bear.vm"))
    posed = [
        pj.View(64, rotation=pj.rotation(turn, tilt)).pose(program)[0]
        for turn, tilt in [(20.0, -25.0), (90.0, 5.0), (180.0, 0.0), (0.0, 90.0)]
    ]
    assert len({to_shaped(p).key for p in posed}) == 1
    assert len({to_shaped_intervals(p).key for p in posed}) == 1
