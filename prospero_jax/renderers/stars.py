"""The stars of a triangle mesh's vertices (the triangles about each): which cross themselves.

Input: a mesh's vertices ``(V, 3)`` (float64) and faces ``(F, 3)`` (int64, consistently
wound). Output of :func:`crossed`: a flag per face that crosses another face about a
vertex they share (an edge of one through the other's interior), touches it along a line
from that vertex (an edge of each along one line: a vertex of one on the other's edge), or
lies folded onto its neighbour across an edge (their normals within :data:`FOLD` degrees
of opposite). Not seen: faces that touch at a point, or overlap in one plane without an
edge crossing the other's plane (a flat cap's), or cross without sharing a vertex (none
met on the test shapes).

Dual contouring's vertices each lie in their own cell, and still the triangles about one
of them can cross where neighbouring cells' vertices sit on different sides of a thin part
or a tight blend: every crossing pair met on the test shapes shares a vertex or an edge.
So the check is local, in two steps: a star that projects one to one onto the plane of its
summed normals (every triangle facing that way, and its triangles turning once about the
vertex) is a disk without overlap; only the others (none on a sphere, tens on the bear,
thousands on a plate thinner than a cell) are tested pair by pair (float64, strict, with a
relative margin, so triangles that only touch at what they share do not count).
"""

from __future__ import annotations

import numpy as np

#: Two triangles on an edge facing within this many degrees of opposite ways are folded
#: onto each other.
FOLD = 1.0
#: Relative margin of the strict tests: a segment's ends must lie farther than this share
#: of the sizes from the triangle's plane, the crossing farther inside than this share of
#: its area (triangles that cross by less, within float32's rounding of a vertex at a
#: cell's corner, are not worth a change that could tangle more).
MARGIN = 1e-5
#: Two edges from one vertex whose angle's sine is at most this lie along one line; one
#: ends inside the other if shorter by more than this share.
TOUCH = 1e-4
#: Two directions along no axis, diagonal or simple ratio: a ray across a star is its
#: normal crossed with the first (or, where that is the normal, the second).
GENERIC = ((0.5377, 0.2543, 0.8039), (-0.3179, 0.8791, 0.3553))


def crossed(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Which faces cross or fold onto another about a vertex they share (module docstring)."""
    flagged = np.zeros(len(faces), bool)
    if not len(faces):
        return flagged
    used = np.zeros(len(vertices), bool)
    used[faces] = True  # only the vertices in faces: a mesh may carry many others
    faces = (np.cumsum(used) - 1)[faces]
    vertices = vertices[used]
    suspects = np.flatnonzero(_not_flat(vertices, faces))
    if not len(suspects):
        return flagged
    # Every pair of triangles about a suspect vertex, the vertex first in each.
    corner = np.argsort(faces.ravel(), kind="stable")
    around = faces.ravel()[corner]
    start = np.searchsorted(around, suspects)
    count = np.searchsorted(around, suspects, side="right") - start
    members = np.repeat(start, count) + _ranks(count)  # each group's places in ``around``
    later = np.repeat(count, count) - 1 - _ranks(count)  # the members after each
    first = np.repeat(members, later)
    second = first + 1 + _ranks(later)
    if not len(first):
        return flagged
    one, two = corner[first], corner[second]
    f1, k1 = np.divmod(one, 3)
    f2, k2 = np.divmod(two, 3)
    v = faces[f1, k1]
    a, b = faces[f1, (k1 + 1) % 3], faces[f1, (k1 + 2) % 3]
    c, d = faces[f2, (k2 + 1) % 3], faces[f2, (k2 + 2) % 3]
    p = vertices
    bad = _crosses(p[a], p[b], p[v], p[c], p[d]) | _crosses(p[c], p[d], p[v], p[a], p[b])
    # Two triangles on an edge (v, a = d, or v, b = c, wound oppositely): folded?
    on_edge = (a == d) | (b == c)
    n1 = np.cross(p[a] - p[v], p[b] - p[v])
    n2 = np.cross(p[c] - p[v], p[d] - p[v])
    size = np.linalg.norm(n1, axis=1) * np.linalg.norm(n2, axis=1)
    cosine = np.einsum("ij,ij->i", n1, n2)
    bad = np.where(on_edge, cosine < -np.cos(np.radians(FOLD)) * size, bad)
    # Two edges from v, of two triangles, along one line the same way, one ending well
    # inside the other: the triangles touch along it (a vertex of one on the other's
    # edge), a pinch the pair test cannot see. (Two ends a rounding apart are no pinch.)
    for x, y in ((a, c), (a, d), (b, c), (b, d)):
        ex, ey = p[x] - p[v], p[y] - p[v]
        lx, ly = np.linalg.norm(ex, axis=1), np.linalg.norm(ey, axis=1)
        along = np.einsum("ij,ij->i", ex, ey) > 0
        along &= np.linalg.norm(np.cross(ex, ey), axis=1) <= TOUCH * lx * ly
        inside = np.minimum(lx, ly) < (1 - TOUCH) * np.maximum(lx, ly)
        bad |= along & inside & (x != y) & (lx * ly > 0)
    flagged[f1[bad]] = True
    flagged[f2[bad]] = True
    return flagged


def _not_flat(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Vertices whose star may overlap itself: some triangle about it faces against the
    star's summed normal, or its triangles do not turn once about it seen along that
    normal (counted as the wedges that hold one direction ``r`` across it). A wedge that
    faces the star's way, from edge ``e1`` to edge ``-e0`` (about the vertex, in the
    triangle's order), holds ``r`` where both edges lie on the same side of ``r``'s line
    as ``w = r × s``: ``e1 · w > 0`` and ``e0 · w > 0``. Float32 and component by
    component: it runs on every mesh, so it is kept cheap (a flagged star is only a
    suspect)."""
    n = len(vertices)
    p = [vertices[:, k].astype(np.float32) for k in range(3)]
    corner = [[p[k][faces[:, j]] for k in range(3)] for j in range(3)]  # corner j's x, y, z
    edge = [[corner[(j + 1) % 3][k] - corner[j][k] for k in range(3)] for j in range(3)]
    normal = _cross(edge[0], [-e for e in edge[2]])
    flat = faces.T.ravel()  # corner 0 of every face, then corner 1, then corner 2
    star = [np.bincount(flat, np.tile(normal[k], 3), minlength=n) for k in range(3)]
    # r: the star's normal crossed with a direction of no special alignment (an edge of
    # a box-aligned mesh lies along r for an axis, and its two wedges would not count it),
    # or with a second one where the first lies along the normal.
    first = _cross(star, [np.full(n, v) for v in GENERIC[0]])
    along = sum(x * x for x in first) < 1e-6 * sum(x * x for x in star)
    second = _cross(star, [np.full(n, v) for v in GENERIC[1]])
    ray = [np.where(along, u, v) for u, v in zip(second, first, strict=True)]
    across = [x.astype(np.float32) for x in _cross(ray, star)]
    s32 = [x.astype(np.float32) for x in star]
    against = np.zeros(n, bool)
    turns = np.zeros(n, np.int64)
    for j in range(3):
        v = faces[:, j]
        facing = sum(normal[k] * s32[k][v] for k in range(3))
        against[v[facing <= 0]] = True
        w = [across[k][v] for k in range(3)]
        out = sum(edge[j][k] * w[k] for k in range(3))  # e1 · w: the edge leaving j
        back = sum(edge[(j + 2) % 3][k] * w[k] for k in range(3))  # e0 · w: the one arriving
        turns += np.bincount(v[(out > 0) & (back > 0)], minlength=n)
    used = np.bincount(flat, minlength=n) > 0
    flagged: np.ndarray = used & (against | (turns != 1))
    return flagged


def _cross(u: list[np.ndarray], v: list[np.ndarray]) -> list[np.ndarray]:
    """``u × v`` of vectors given component by component."""
    return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]


def _crosses(
    p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """Whether each segment ``p q`` passes through the interior of triangle ``a b c``:
    its ends strictly on both sides of the plane, the crossing strictly inside."""
    normal = np.cross(b - a, c - a)
    size = np.maximum(np.linalg.norm(b - a, axis=1), np.linalg.norm(c - a, axis=1))
    size = np.maximum(size, np.linalg.norm(q - p, axis=1))
    area = np.linalg.norm(normal, axis=1)
    dp = np.einsum("ij,ij->i", p - a, normal)
    dq = np.einsum("ij,ij->i", q - a, normal)
    margin = MARGIN * area * size
    across = ((dp > margin) & (dq < -margin)) | ((dp < -margin) & (dq > margin))
    with np.errstate(all="ignore"):
        t = np.where(across, dp / (dp - dq), 0.0)
    x = p + t[:, None] * (q - p)
    inside: np.ndarray = across & (area > 1e-9 * size**2)  # not a sliver
    for u, w in ((a, b), (b, c), (c, a)):
        inside &= np.einsum("ij,ij->i", np.cross(u - x, w - x), normal) > MARGIN * area**2
    return inside


def _ranks(count: np.ndarray) -> np.ndarray:
    """``0 … count[i] - 1`` for each ``i``, concatenated."""
    ranks: np.ndarray = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return ranks
