"""Geometric checks of triangle meshes for the tests: which pairs of triangles cross.

Input: a mesh's vertices ``(V, 3)`` and faces ``(F, 3)``. Output of
:func:`self_intersections`: the pairs of faces ``(P, 2)`` (``i < j``) whose triangles meet
anywhere but at the vertices and edges they share: an edge of one passes through the
other's interior (Möller and Trumbore's segment test, float64, strict inequalities with a
relative margin, so triangles that only touch at a shared vertex or edge, or graze within
rounding, do not count). Coplanar overlaps are not detected (two triangles in one plane
that overlap have no edge crossing the other's interior); a fold of two triangles on one
edge onto each other is, by :func:`folds`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

#: Relative margin of the strict tests (barycentric coordinates and the edge's parameter).
MARGIN = 1e-9


def self_intersections(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The pairs of faces that cross each other (module docstring)."""
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    if len(faces) < 2:
        return np.zeros((0, 2), np.int64)
    corners = vertices[faces]  # (F, 3 corners, 3)
    centre = corners.mean(axis=1)
    radius = np.linalg.norm(corners - centre[:, None], axis=2).max(axis=1)
    pairs = cKDTree(centre).query_pairs(2 * float(radius.max()) * (1 + 1e-9), output_type="ndarray")
    if not len(pairs):
        return np.zeros((0, 2), np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    low, high = corners.min(axis=1), corners.max(axis=1)
    overlap = ((low[i] <= high[j]) & (low[j] <= high[i])).all(axis=1)
    shared = (faces[i][:, :, None] == faces[j][:, None, :]).sum(axis=(1, 2))
    i, j = i[overlap & (shared < 2)], j[overlap & (shared < 2)]  # an edge shared: folds()
    crossed = np.zeros(len(i), bool)
    for a, b in ((i, j), (j, i)):
        for k in range(3):  # each edge of a against the triangle b
            crossed |= _segment_crosses(corners[a, k], corners[a, (k + 1) % 3], corners[b])
    out: np.ndarray = np.stack([i[crossed], j[crossed]], axis=1)
    return out


def folds(vertices: np.ndarray, faces: np.ndarray) -> int:
    """How many edges have their two triangles folded onto each other (the angle between
    the triangles' normals within a degree of 180°: one lies on the other)."""
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    unit = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    owner = np.tile(np.arange(len(faces)), 3)
    key = np.sort(directed, axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, owner = key[order], owner[order]
    same = (key[1:] == key[:-1]).all(axis=1)
    first, second = owner[:-1][same], owner[1:][same]
    cosine = np.einsum("ij,ij->i", unit[first], unit[second])
    return int((cosine < -np.cos(np.radians(1.0))).sum())


def _segment_crosses(p: np.ndarray, q: np.ndarray, triangle: np.ndarray) -> np.ndarray:
    """Whether each segment ``p → q`` meets the interior of its triangle (``(n, 3 corners,
    3)``): across its plane, strictly inside; or, both ends in its plane (within
    :data:`FLAT` of the triangle's size: float32 vertices of a flat part), an end strictly
    inside it, its middle inside it, or the segment properly crossing one of its edges."""
    a, b, c = triangle[:, 0], triangle[:, 1], triangle[:, 2]
    normal = np.cross(b - a, c - a)
    area = np.linalg.norm(normal, axis=1)
    size = np.linalg.norm(triangle - triangle[:, [1, 2, 0]], axis=2).max(axis=1)
    usable = area > MARGIN * size**2  # not a sliver
    unit = np.divide(normal, area[:, None], out=np.zeros_like(normal), where=usable[:, None])
    dp = np.einsum("ij,ij->i", p - a, unit)
    dq = np.einsum("ij,ij->i", q - a, unit)
    flat = FLAT * size
    across = ((dp > flat) & (dq < -flat)) | ((dp < -flat) & (dq > flat))
    t = np.divide(dp, dp - dq, out=np.zeros_like(dp), where=across)
    crossing = usable & across & _strictly_inside(p + t[:, None] * (q - p), a, b, c, unit)
    in_plane = usable & (np.abs(dp) <= flat) & (np.abs(dq) <= flat)
    if in_plane.any():  # the plane's own test, projected along its normal's largest axis
        keep = np.argsort(np.abs(unit), axis=1)[:, :2]  # drop the normal's largest axis

        def flat2(x: np.ndarray) -> np.ndarray:
            return np.take_along_axis(x, keep, axis=1)

        p2, q2, a2, b2, c2 = (flat2(x) for x in (p, q, a, b, c))
        inside = _strictly_inside(p, a, b, c, unit) | _strictly_inside((p + q) / 2, a, b, c, unit)
        for u, v in ((a2, b2), (b2, c2), (c2, a2)):
            inside |= _properly_cross(p2, q2, u, v)
        crossing |= in_plane & inside
    return crossing


#: Points within this share of a triangle's size from its plane are in it.
FLAT = 1e-5


def _strictly_inside(
    x: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, unit: np.ndarray
) -> np.ndarray:
    """Whether each point ``x`` (in or near the plane of ``a b c``, unit normal ``unit``)
    projects strictly inside the triangle, its barycentric coordinates above a margin."""
    area = np.einsum("ij,ij->i", np.cross(b - a, c - a), unit)
    u = np.einsum("ij,ij->i", np.cross(b - x, c - x), unit)
    v = np.einsum("ij,ij->i", np.cross(c - x, a - x), unit)
    w = np.einsum("ij,ij->i", np.cross(a - x, b - x), unit)
    margin = FLAT * np.abs(area)  # a share of the triangle's height over each edge
    inside: np.ndarray = (u > margin) & (v > margin) & (w > margin)
    return inside


def _properly_cross(p: np.ndarray, q: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether 2-D segments ``p q`` and ``u v`` cross at a point interior to both."""

    def side(o: np.ndarray, d: np.ndarray, x: np.ndarray) -> np.ndarray:
        turn: np.ndarray = (d[:, 0] - o[:, 0]) * (x[:, 1] - o[:, 1]) - (d[:, 1] - o[:, 1]) * (
            x[:, 0] - o[:, 0]
        )
        return turn

    scale = np.linalg.norm(q - p, axis=1) * np.linalg.norm(v - u, axis=1) * FLAT
    s1, s2 = side(p, q, u), side(p, q, v)
    s3, s4 = side(u, v, p), side(u, v, q)
    crossed: np.ndarray = (((s1 > scale) & (s2 < -scale)) | ((s1 < -scale) & (s2 > scale))) & (
        ((s3 > scale) & (s4 < -scale)) | ((s3 < -scale) & (s4 > scale))
    )
    return crossed
