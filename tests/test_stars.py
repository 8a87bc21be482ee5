"""The mesh check that untangles dual contouring: faces crossing or folding about a vertex,
held against the tests' own global check (``tests/geometry.py``) on small meshes."""

from __future__ import annotations

import numpy as np
import pytest

from prospero_jax.renderers.stars import crossed
from tests.geometry import folds, self_intersections

#: An octahedron, wound outwards: every star flat, nothing crosses.
OCTAHEDRON = (
    np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64),
    np.array(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    ),
)


def _fan(tips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A closed fan of triangles about the origin through ``tips`` (``(n, 3)``)."""
    vertices = np.concatenate([np.zeros((1, 3)), tips])
    n = len(tips)
    faces = np.array([[0, 1 + k, 1 + (k + 1) % n] for k in range(n)])
    return vertices, faces


def test_a_clean_closed_mesh_has_no_crossed_faces() -> None:
    vertices, faces = OCTAHEDRON
    assert not crossed(vertices, faces).any()
    bumped = vertices * np.array([1.0, 0.7, 1.3])  # no longer regular, still convex
    assert not crossed(bumped, faces).any()


def test_a_fan_that_winds_twice_about_its_vertex_is_found() -> None:
    # Seven tips going twice round the vertex, all facing +z: every triangle faces the
    # star's way, but the star overlaps itself (the summed angles are two turns).
    angles = np.linspace(0, 4 * np.pi, 7, endpoint=False)
    tips = np.stack([np.cos(angles), np.sin(angles), 0.05 * np.arange(7)], axis=1)
    vertices, faces = _fan(tips)
    found = crossed(vertices, faces)
    assert found.any()
    pairs = self_intersections(vertices, faces)
    assert len(pairs)
    assert found[pairs.ravel()].all()


def test_a_triangle_through_its_neighbour_about_a_vertex_is_found() -> None:
    # A shallow cone of six triangles about the origin; one tip dragged across to the far
    # side, low, so its triangle with the first tip passes through the third triangle.
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    tips = np.stack([np.cos(angles), np.sin(angles), np.full(6, 0.3)], axis=1)
    vertices, faces = _fan(tips)
    assert not crossed(vertices, faces).any()
    vertices[2] = [-0.9, 0.1, 0.2]
    pairs = self_intersections(vertices, faces)
    assert pairs.tolist() == [[0, 2]]
    assert crossed(vertices, faces).tolist() == [True, False, True, False, False, False]


@pytest.mark.parametrize("lift", [0.0, 1e-4])
def test_a_fold_is_found_and_an_open_book_is_not(lift: float) -> None:
    # Two triangles on the edge 0-1: the second folded back over the first (within a
    # degree), or opened out beside it.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0.4, 0.8, 0], [0.5, 0.6, lift], [0.5, -0.6, 0]])
    folded, flat = np.array([[0, 1, 2], [1, 0, 3]]), np.array([[0, 1, 2], [1, 0, 4]])
    assert folds(vertices, folded) == 1
    assert crossed(vertices.astype(np.float64), folded).all()
    assert not crossed(vertices.astype(np.float64), flat).any()


def test_triangles_touching_along_an_edge_from_their_vertex_are_found() -> None:
    # About vertex 0: a flat triangle (0, 1, 2) and, folded up against it, (0, 4, 3) whose
    # vertex 4 lies on the edge 0-1, a rounding past it within (0, 4, 3)'s plane (as on a
    # plate's cut face at 151: the tests' check counts the edge 0-1 as through the folded
    # triangle, which faces against the star). Lifting vertex 4 off the line parts them.
    up = np.array([0.0, 0.5, 0.4]) / np.linalg.norm([0.0, 0.5, 0.4])
    vertices = np.array(
        [[0, 0, 0], [1, 0, 0], [0.5, -0.8, 0], 0.8 * up + [0.3, 0, 0], [0.5, 0, 0] - 2e-5 * up]
    )
    faces = np.array([[0, 1, 2], [0, 4, 3]])
    assert len(self_intersections(vertices, faces))
    assert crossed(vertices, faces).all()
    vertices[4] = [0.5, 0.1, 0.05]
    assert not len(self_intersections(vertices, faces))
    assert not crossed(vertices, faces).any()
