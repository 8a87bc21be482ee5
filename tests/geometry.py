"""Geometric checks of triangle meshes for the tests: which pairs of triangles cross.

Input: a mesh's vertices ``(V, 3)`` and faces ``(F, 3)``. Output of
:func:`self_intersections`: the pairs of faces ``(P, 2)`` (``i < j``) whose triangles meet
anywhere but at the vertices and edges they share: an edge of one passes through the
other's interior (Möller and Trumbore's segment test, float64, strict inequalities with a
relative margin, so triangles that only touch at a shared vertex or edge, or graze within
rounding, do not count). Coplanar overlaps are not detected (two triangles in one plane
that overlap have no edge crossing the other's interior); a fold of two triangles on one
edge onto each other is, by :func:`folds`. Only pairs whose bounding boxes overlap are
tested (:func:`overlapping_boxes`), and of those only the edges near the other's plane.
"""

from __future__ import annotations

import numpy as np

#: Relative margin of the strict tests (barycentric coordinates and the edge's parameter).
MARGIN = 1e-9


def self_intersections(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The pairs of faces that cross each other (module docstring)."""
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    if len(faces) < 2:
        return np.zeros((0, 2), np.int64)
    corners = vertices[faces]  # (F, 3 corners, 3)
    i, j = overlapping_boxes(corners.min(axis=1), corners.max(axis=1))
    shared = (faces[i][:, :, None] == faces[j][:, None, :]).sum(axis=(1, 2))
    i, j = i[shared < 2], j[shared < 2]  # an edge shared: folds()
    crossed = np.zeros(len(i), bool)
    for a, b in ((i, j), (j, i)):
        # Only a triangle a with a corner near b's plane, or corners on both its sides,
        # can have an edge that meets b (_segment_crosses; twice its margin, so rounding
        # cannot tell the two apart): the others are skipped.
        unit, usable, flat = _plane(corners[b])
        side = np.stack(
            [np.einsum("ij,ij->i", corners[a, k] - corners[b, 0], unit) for k in range(3)], 1
        )
        apart = (side > 2 * flat[:, None]).all(axis=1) | (side < -2 * flat[:, None]).all(axis=1)
        near = np.flatnonzero(usable & ~apart)
        edges, triangle = corners[a[near]], corners[b[near]]
        plane = (unit[near], usable[near], flat[near])
        for k in range(3):  # each edge of a against the triangle b
            crossed[near] |= _segment_crosses(edges[:, k], edges[:, (k + 1) % 3], triangle, plane)
    out: np.ndarray = np.stack([i[crossed], j[crossed]], axis=1)
    return out


def overlapping_boxes(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(i, j)``, ``i < j``, of boxes ``low[i]..high[i]`` (``(n, 3)`` each) that
    overlap or touch: every box is entered in each cell of a uniform grid it meets (cells
    as wide as the median box's largest side), and the boxes sharing a cell are compared.
    (Centres within twice the largest triangle's radius, as a k-d tree found them, made
    every pair of a mesh with a few large flat triangles a candidate: the colonnade's
    80³ mesh took 25 s here.)"""
    count = len(low)
    cell = float(np.median((high - low).max(axis=1))) or 1.0
    origin = low.min(axis=0)
    first = np.floor((low - origin) / cell).astype(np.int64)
    last = np.floor((high - origin) / cell).astype(np.int64)
    span = last - first + 1  # cells a box meets along each axis
    cells = span.prod(axis=1)
    box = np.repeat(np.arange(count), cells)
    k = np.arange(len(box)) - np.repeat(np.cumsum(cells) - cells, cells)  # a box's k-th cell
    across, down = span[box, 0], span[box, 1]
    x, y, z = (
        first[box, 0] + k % across,
        first[box, 1] + k // across % down,
        first[box, 2] + k // (across * down),
    )
    dims = last.max(axis=0) + 1
    key = (x * dims[1] + y) * dims[2] + z
    order = np.lexsort((box, key))  # by cell, then box: each cell's pairs come out i < j
    key, box = key[order], box[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    later = np.repeat(starts + sizes, sizes) - np.arange(len(box)) - 1  # boxes after it in its cell
    a = np.repeat(np.arange(len(box)), later)
    b = a + 1 + np.arange(len(a)) - np.repeat(np.cumsum(later) - later, later)
    i, j = np.divmod(np.unique(box[a] * count + box[b]), count)
    overlap = ((low[i] <= high[j]) & (low[j] <= high[i])).all(axis=1)
    return i[overlap], j[overlap]


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


def _segment_crosses(
    p: np.ndarray, q: np.ndarray, triangle: np.ndarray, plane: tuple[np.ndarray, ...]
) -> np.ndarray:
    """Whether each segment ``p → q`` meets the interior of its triangle (``(n, 3 corners,
    3)``, its :func:`_plane` ``plane``): across its plane, strictly inside; or, both ends in
    its plane (within :data:`FLAT` of the triangle's size: float32 vertices of a flat
    part), an end strictly inside it, its middle inside it, or the segment properly
    crossing one of its edges. Each test runs on the segments that reach it only."""
    unit, usable, flat = plane
    a = triangle[:, 0]
    dp = np.einsum("ij,ij->i", p - a, unit)
    dq = np.einsum("ij,ij->i", q - a, unit)
    crossing = np.zeros(len(p), bool)
    across = np.flatnonzero(usable & (((dp > flat) & (dq < -flat)) | ((dp < -flat) & (dq > flat))))
    if len(across):
        t = dp[across] / (dp[across] - dq[across])
        at = p[across] + t[:, None] * (q[across] - p[across])
        crossing[across] = _strictly_inside(at, *_corners(triangle[across]), unit[across])
    flat_ = np.flatnonzero(usable & (np.abs(dp) <= flat) & (np.abs(dq) <= flat))
    if len(flat_):  # the plane's own test, projected along its normal's largest axis
        p, q, triangle, unit = p[flat_], q[flat_], triangle[flat_], unit[flat_]
        a, b, c = _corners(triangle)
        keep = np.argsort(np.abs(unit), axis=1)[:, :2]  # drop the normal's largest axis

        def flat2(x: np.ndarray) -> np.ndarray:
            return np.take_along_axis(x, keep, axis=1)

        p2, q2, a2, b2, c2 = (flat2(x) for x in (p, q, a, b, c))
        inside = _strictly_inside(p, a, b, c, unit) | _strictly_inside((p + q) / 2, a, b, c, unit)
        for u, v in ((a2, b2), (b2, c2), (c2, a2)):
            inside |= _properly_cross(p2, q2, u, v)
        crossing[flat_] = inside
    return crossing


def _corners(triangle: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return triangle[:, 0], triangle[:, 1], triangle[:, 2]


def _plane(triangle: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each triangle's (``(n, 3 corners, 3)``) unit normal (0 for a sliver), whether it is
    usable (not a sliver) and its margin: points within it of the plane are in it."""
    a, b, c = triangle[:, 0], triangle[:, 1], triangle[:, 2]
    normal = np.cross(b - a, c - a)
    area = np.linalg.norm(normal, axis=1)
    size = np.linalg.norm(triangle - triangle[:, [1, 2, 0]], axis=2).max(axis=1)
    usable = area > MARGIN * size**2
    unit = np.divide(normal, area[:, None], out=np.zeros_like(normal), where=usable[:, None])
    return unit, usable, FLAT * size


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
