"""Dual contouring: a solid's grid of signs → a closed, manifold mesh that keeps its corners.

Input: the grid's values, slab by slab (:class:`Cells` keeps the cells the surface crosses,
their corners' values and every point's sign; the grid padded with a layer of outside
points all round, so the mesh is closed at the box), the program, the box (a
:class:`~prospero_jax.renderers.view.View`'s region × zrange), a target and a merging
``tolerance``.
Output: ``(vertices, faces)``: float64 ``(V, 3)`` and int64 ``(F, 3)``, wound
counter-clockwise seen from outside.

How (Ju et al.'s dual contouring, with one vertex per surface sheet of a cell as in
Schaefer et al.'s manifold variant): each grid edge whose ends differ in sign crosses the
surface; the crossing is found on the edge from the grid's values by Newton steps kept in
the bracket (else bisection), and its normal is the field's gradient there (forward mode,
the op table's partials, on pruned tapes: :func:`~prospero_jax.renderers.gradients.
field_gradients`). An edge to a padding point crosses at the box's face, with the face's
normal. A cell's crossing edges are grouped into sheets by the loops they make on its faces
(an ambiguous face, two inside corners on a diagonal, keeps the inside corners apart,
unless that makes it a tunnel, one sheet touching it twice from both sides: then it joins
them; the same rule on both sides of every face, so sheets meet consistently); each sheet
gets one
vertex where the planes of its crossings meet best (the quadratic error function,
:class:`~prospero_jax.renderers.merge.Errors`), clamped to its cell and the box; a best
point in an uncrossed neighbouring cell and on the surface (a tip poking through) is kept.
Cells then merge bottom-up where one vertex fits (:func:`~prospero_jax.renderers.merge.
merge`). The vertices the mesh keeps that are a sheet's own take Newton steps in their
cell (curved parts); one that stalls against the cell's walls starts again from its
crossings' mean, else takes the crossing nearest that mean. Each crossing edge gives a
quad of the four vertices around it, split along the shorter diagonal whose triangles
face the way the edge leaves the solid, else
into four triangles about the edge's crossing (a quad two of whose cells merged is a
triangle). Then the mesh is untangled: where two triangles about one vertex cross or fold
(:func:`~prospero_jax.renderers.stars.crossed`), or a quad folds whichever way it is
split, a merged block among the quad's vertices goes back to its cells' own vertices, and
a quad of cells' own vertices is fanned about its edge's crossing (tight blends, plates
thinner than a cell whose pockets put vertices on both faces).

Invariants: every mesh edge is in exactly two triangles, once in each direction (the
surface of the sign grid's inside, each sheet a disk); vertices lie in their cells (or
merged blocks), in the box; no two triangles about a vertex cross or fold, unless fanning
their quads could not part them or they lie on a flat cap of the box (a part thinner than
a cell crossing the box at a low resolution; :mod:`~prospero_jax.renderers.stars` says
what the check does not see).
"""

from __future__ import annotations

import functools

import numpy as np

from prospero_jax.ir.program import Program
from prospero_jax.renderers.gradients import field_gradients, onto_surface, surface_distance
from prospero_jax.renderers.hierarchy import LEAF_SIDE
from prospero_jax.renderers.merge import Errors, Signs, merge
from prospero_jax.renderers.stars import crossed
from prospero_jax.renderers.view import Target, View

#: Steps that find each crossing on its edge (Newton in the bracket, else bisection).
CROSSING_STEPS = 8
#: Rounds at most of untangling: undoing merged blocks and fanning quads where triangles
#: about a vertex cross or fold (each round changes those found, then splits the quads
#: about them again and checks the triangles about them).
UNTANGLE_ROUNDS = 8
#: Newton steps that move a vertex of a curved part onto the surface (in its cell).
NEWTON_STEPS = 4
#: A point within this many cells of the surface (``|f| / |∇f|``, or a crossing's last
#: move) is on it; one farther after the Newton steps (stalled against its cell's walls)
#: starts again from its crossings' mean, else takes a crossing. Never finer than
#: :data:`PRECISION` units of the dtype's precision at the box's scale: float32 cannot
#: place a point closer.
NEAR = 1e-5
PRECISION = 16

#: A cell's corner ``i`` is at ``(i & 1, i >> 1 & 1, i >> 2 & 1)`` (axes a, b, c: column,
#: row, plane of the grid); its edge ``4 d + u + 2 v`` runs along axis ``d`` from the
#: corner whose other two coordinates (in increasing axis order) are ``u`` and ``v``.
_CORNERS = np.array([(i & 1, i >> 1 & 1, i >> 2 & 1) for i in range(8)])


def _others(d: int) -> tuple[int, int]:
    """The two axes other than ``d``, in increasing order."""
    first, second = (k for k in range(3) if k != d)
    return first, second


def _edge_ends(edge: int) -> tuple[int, int]:
    """The corners at the two ends of ``edge``, the lower first."""
    d, bits = divmod(edge, 4)
    o1, o2 = _others(d)
    corner = np.zeros(3, int)
    corner[o1], corner[o2] = bits & 1, bits >> 1
    low = int(corner @ [1, 2, 4])
    return low, low + (1 << d)


@functools.cache
def _faces() -> list[tuple[list[int], list[int]]]:
    """Each face ``2 d + side`` of a cell (``d``: the axis across it): its 4 corners in
    cyclic order and the edge between each corner and the next."""
    ends = [_edge_ends(e) for e in range(12)]
    faces = []
    for d in range(3):
        o1, o2 = _others(d)
        for side in (0, 1):
            corners = []
            for u, v in [(0, 0), (1, 0), (1, 1), (0, 1)]:
                c = np.zeros(3, int)
                c[d], c[o1], c[o2] = side, u, v
                corners.append(int(c @ [1, 2, 4]))
            edges = []
            for k in range(4):
                pair = {corners[k], corners[(k + 1) % 4]}
                edges.append(next(e for e in range(12) if set(ends[e]) == pair))
            faces.append((corners, edges))
    return faces


@functools.cache
def _sheets_of(config: int, flips: int = 0) -> tuple[tuple[int, ...], int, int]:
    """For sign configuration ``config`` (bit ``i``: corner ``i`` inside), with its
    ambiguous faces (two inside corners on a diagonal) in ``flips`` (a bit per face)
    joining the inside corners and the others keeping them apart: the sheet of each of
    its 12 edges (-1: not crossed), the number of sheets, and a bit per ambiguous face
    whose two arcs are in one sheet."""
    ends = [_edge_ends(e) for e in range(12)]
    inside = [(config >> i) & 1 for i in range(8)]
    crossed = [inside[a] != inside[b] for a, b in ends]
    parent = list(range(12))
    for f, (corners, edges) in enumerate(_faces()):
        cut = [e for e in edges if crossed[e]]
        if len(cut) == 2:
            parent[_find(parent, cut[0])] = _find(parent, cut[1])
        elif len(cut) == 4:  # diagonal: each inside (or, flipped, outside) corner cut off
            cut_off = 0 if flips >> f & 1 else 1
            for k, corner in enumerate(corners):
                if inside[corner] == cut_off:  # its two edges on the face: one arc
                    parent[_find(parent, edges[k - 1])] = _find(parent, edges[k])
    roots: dict[int, int] = {}
    row = [-1] * 12
    for e in range(12):
        if crossed[e]:
            row[e] = roots.setdefault(_find(parent, e), len(roots))
    tunnels = 0
    for f, (_, edges) in enumerate(_faces()):  # an ambiguous face whose arcs are one sheet
        if all(crossed[e] for e in edges) and len({row[e] for e in edges}) == 1:
            tunnels |= 1 << f
    return tuple(row), len(roots), tunnels


@functools.cache
def sheets() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 256 sign configurations of a cell (bit ``i``: corner ``i`` inside),
    every ambiguous face keeping its inside corners apart, the sheet of each of its 12
    edges (-1: not crossed) and the number of sheets."""
    rows = [_sheets_of(config) for config in range(256)]
    table = np.array([row for row, _, _ in rows], np.int8)
    return table, np.array([count for _, count, _ in rows], np.int8)


@functools.cache
def _tunnels() -> np.ndarray:
    """For each configuration, a bit per face ``2 d + side`` that is ambiguous with both
    its arcs in one sheet (every face keeping its inside corners apart)."""
    return np.array([_sheets_of(config)[2] for config in range(256)], np.uint8)


def _next_bit(packed: np.ndarray) -> np.ndarray:
    """Packed bits (along the last axis, the first point in the high bit) moved one point
    back: each point's bit becomes the next point's (0 past the end)."""
    moved = packed << np.uint8(1)
    moved[..., :-1] |= packed[..., 1:] >> np.uint8(7)
    return moved


def _find(parent: list[int], e: int) -> int:
    """Union-find's root of ``e``."""
    while parent[e] != e:
        parent[e] = parent[parent[e]]
        e = parent[e]
    return e


class Cells:
    """The cells of a padded sign grid the surface crosses, gathered slab by slab.

    The grid has ``shape = (na, nb, nc)`` points (columns, rows, planes) and is padded with
    an outside point on every side, so cell ``(a, b, c)`` (its lowest corner) runs from
    ``-1`` to ``n - 1`` on each axis."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self.keys: list[np.ndarray] = []
        self.configs: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.signs = Signs(shape)  # every point's, for merging

    def key(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """A cell's (or a point's) number from its padded coordinates."""
        na, nb, _ = self.shape
        key: np.ndarray = ((c + 1) * (nb + 2) + (b + 1)) * (na + 2) + (a + 1)
        return key

    def see(self, values: np.ndarray, first: int, bottom: bool, top: bool) -> None:
        """Planes ``first…`` of the grid (``values``: ``[plane, row, column]``, inside where
        ≤ 0; the slab's last plane is the next slab's first), padded below on the
        ``bottom`` slab and above on the ``top`` one."""
        below = int(bottom)
        planes, rows, columns = values.shape
        inside = np.zeros((planes + below + int(top), rows + 2, columns + 2), bool)
        inside[below : below + planes, 1:-1, 1:-1] = values <= 0
        packed = np.packbits(inside, axis=2)  # 8 points a byte, the first in the high bit
        self.signs.store(packed, first - below + 1)
        # A cell is crossed where its corners are neither all inside nor all outside: the
        # four points about each column (planes and rows) any and all inside, then the
        # column and the next one (the next bit), on packed bytes; only the bytes with a
        # crossed cell are unpacked.
        any4, all4 = packed[1:] | packed[:-1], packed[1:] & packed[:-1]
        any4, all4 = any4[:, 1:] | any4[:, :-1], all4[:, 1:] & all4[:, :-1]
        crossed = (any4 | _next_bit(any4)) & ~(all4 & _next_bit(all4))
        at = np.flatnonzero(crossed)
        c, rest = np.divmod(at, crossed.shape[1] * crossed.shape[2])
        b, byte = np.divmod(rest, crossed.shape[2])
        j, bit = np.nonzero(np.unpackbits(crossed.ravel()[at][:, None], axis=1))
        c, b, a = c[j], b[j], 8 * byte[j] + bit  # padded cells (their lowest corner)
        config = np.zeros(len(c), np.uint8)
        corners = []
        for i, (da, db, dc) in enumerate(_CORNERS):
            config |= inside[c + dc, b + db, a + da].view(np.uint8) << np.uint8(i)
            # The corner's value in the slab (unpadded), +1 on the padding.
            k, row, col = c + dc - below, b + db - 1, a + da - 1
            within = (k >= 0) & (k < planes) & (row >= 0) & (row < rows)
            within &= (col >= 0) & (col < columns)
            k, row, col = (np.where(within, x, 0) for x in (k, row, col))
            corners.append(np.where(within, values[k, row, col], 1).astype(np.float32))
        self.configs.append(config)
        self.keys.append(self.key(a - 1, b - 1, c + first - below))
        self.values.append(np.stack(corners, axis=1))

    def gathered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every crossed cell's key (sorted), sign configuration and corner values (the
        grid's: stand-ins of the right sign where the octree proved a box)."""
        if not self.keys:
            return np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros((0, 8), np.float32)
        keys, configs = np.concatenate(self.keys), np.concatenate(self.configs)
        values = np.concatenate(self.values)
        if (keys[1:] > keys[:-1]).all():  # slab after slab, each in order: sorted already
            return keys, configs, values
        order = np.argsort(keys, kind="stable")
        return keys[order], configs[order], values[order]


def contour(
    program: Program,
    cells: Cells,
    view: View,
    target: Target,
    project: bool = True,
    tolerance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The mesh of ``cells``'s surface (module docstring): ``(vertices, faces)``;
    ``project`` moves the vertices of sheets off the box's faces onto the surface by
    Newton steps, kept in their cells; cells merge where one vertex stays within
    ``tolerance`` cells of their crossings' planes (:func:`~prospero_jax.renderers.merge.
    merge`; 0: none). None where the surface has a tunnel through a cell face that is one
    sheet on both sides whichever way the face is resolved (:func:`tunnels`): its ring
    would have two vertices, and the mesh would not be manifold there."""
    keys, configs, corner_values = cells.gathered()
    if not len(keys):
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    resolved = _resolve(keys, configs, cells)
    if resolved is None:
        return None
    table, counts = resolved  # each cell's sheet of each edge, and its number of sheets
    na, nb, _ = cells.shape
    a = keys % (na + 2) - 1
    b = keys // (na + 2) % (nb + 2) - 1
    c = keys // ((na + 2) * (nb + 2)) - 1
    # Each crossed edge once: from the cell it starts at the lowest corner of (its edge
    # 0, 4 or 8), which is crossed too (every cell around a crossed edge is).
    cell, d = np.nonzero(table[:, [0, 4, 8]] >= 0)
    axis, edge = d, 4 * d
    start = np.stack([a[cell], b[cell], c[cell]], axis=1)
    end = start.copy()
    end[np.arange(len(cell)), axis] += 1
    start_inside = (configs[cell] & 1) == 1  # corner 0 of the cell
    v0 = corner_values[cell, 0].astype(np.float64)
    v1 = corner_values[cell, _edge_ends_table()[edge, 1]].astype(np.float64)
    v_in, v_out = np.where(start_inside, v0, v1), np.where(start_inside, v1, v0)
    with np.errstate(all="ignore"):  # where the grid's values put it, from the inside end
        guess = np.nan_to_num(v_in / (v_in - v_out), nan=0.5)
    (xmin, xmax, ymin, ymax), (zmin, zmax) = view.region, view.zrange
    h = float(np.min(np.abs(_world(np.ones((1, 3), int), view, cells.shape)
                            - _world(np.zeros((1, 3), int), view, cells.shape))))  # fmt: skip
    scale = max(abs(v) for v in (xmin, xmax, ymin, ymax, zmin, zmax))
    floor = PRECISION * float(np.finfo(target.dtype).eps) * max(scale, h)
    near = max(NEAR * h, floor)
    point, normal, padding = _crossings(
        program, start, end, start_inside, guess, near, cells.shape, view, target
    )
    # The four cells around each crossed edge, counter-clockwise about it, and the sheet
    # of each that the edge belongs to.
    base = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rows = np.arange(len(cell))
    p1, p2 = np.where(axis == 0, 1, 0), np.where(axis == 2, 1, 2)
    around = []
    for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):
        corner = start.copy()
        corner[rows, p1] -= u
        corner[rows, p2] -= v
        at = np.searchsorted(keys, cells.key(corner[:, 0], corner[:, 1], corner[:, 2]))
        around.append(base[at] + table[at, axis * 4 + u + 2 * v])
    quads = np.stack(around, axis=1)
    # One vertex per sheet of each cell, at its planes' best meeting point: each crossing
    # counts for the four sheets around its edge.
    sheet = quads.T.ravel()
    which = np.tile(rows, 4)
    count = int(counts.sum())
    errors = Errors.of(point, normal, quads, count)
    vertices, _ = errors.minimum()
    mean = errors.mass / np.maximum(errors.crossings, 1)[:, None]
    capped = np.bincount(sheet, padding[which], count) > 0  # on the box's faces
    low_corner = _world(np.stack([a, b, c], axis=1), view, cells.shape)
    high_corner = _world(np.stack([a + 1, b + 1, c + 1], axis=1), view, cells.shape)
    cell_of_sheet = np.repeat(np.arange(len(keys)), counts)
    lo = np.minimum(low_corner, high_corner)[cell_of_sheet]
    hi = np.maximum(low_corner, high_corner)[cell_of_sheet]
    lo = np.maximum(lo, [xmin, ymin, zmin])
    hi = np.minimum(hi, [xmax, ymax, zmax])
    # A best point outside its cell: the planes meet beyond it. In a neighbouring cell
    # that the surface crosses without a sign change (a tip or a ridge poking through,
    # so no vertex of its own is there), it is kept; else the crossings' mean, which lies
    # in the cell (then Newton steps).
    outside = ((vertices < lo) | (vertices > hi)).any(axis=1)
    steps = np.abs(high_corner - low_corner)[0]
    poking = outside.copy()
    poking[outside] = _in_empty_neighbour(
        vertices[outside], lo[outside], hi[outside], steps, keys, cells, view
    )
    poking[poking] = surface_distance(program, vertices[poking], steps, target) < near
    vertices = np.where(
        poking[:, None], vertices, np.clip(np.where(outside[:, None], mean, vertices), lo, hi)
    )
    free = ~capped & ~poking  # sheets whose vertex Newton steps may move (if ``project``)

    def settle(sheets: np.ndarray) -> None:
        """Where the planes do not pin the vertex down (curved parts): onto the surface,
        in its cell; each sheet once, and only those whose vertex the mesh uses."""
        sheets = sheets[free[sheets]]
        free[sheets] = False
        if not project or not len(sheets):
            return
        moved, distance = onto_surface(
            program, vertices[sheets], steps, target, lo[sheets], hi[sheets], near, NEWTON_STEPS
        )
        vertices[sheets] = moved
        # Newton steps that stall against the cell's walls: the sheet's crossing nearest
        # the vertex instead (on the surface, in the cell's closure).
        stuck = sheets[distance > near]
        if len(stuck):
            # Stalled: Newton steps again from the crossings' mean (inside the cell, where
            # the surface passes), else the sheet's crossing nearest that mean. A crossing
            # lies on an edge of four cells, so near the vertices of the other three: the
            # crossing nearest the vertex folded quads on the bear (one at 64, 101, 151).
            again, gap = onto_surface(
                program, mean[stuck], steps, target, lo[stuck], hi[stuck], near, 2 * NEWTON_STEPS
            )
            vertices[stuck] = np.where(
                (gap <= near)[:, None], again, _nearest(point[which], sheet, mean, stuck)
            )

    # (u, v) in increasing axis order turns about +d for d = 0 and 2 and about -d for d = 1;
    # the outward normal is +d where the edge's lower end is inside; rows run down y (a
    # mirror: what turns the right way in grid coordinates turns the wrong way in space).
    flip = (axis == 1) ^ start_inside
    quads[flip] = quads[flip][:, ::-1]
    # The direction in which each crossed edge leaves the solid (its quad's triangles face it).
    outward = np.zeros((len(cell), 3))
    edge_step = _world(np.eye(3, dtype=int), view, cells.shape) - _world(
        np.zeros((1, 3), int), view, cells.shape
    )  # one step along each axis, in space
    outward[rows, axis] = np.where(start_inside, 1.0, -1.0) * edge_step[axis, axis]
    own = len(vertices)  # sheets' own vertices come first; merged blocks' after them
    if tolerance <= 0:
        settle(np.arange(own))
        node, positions = np.arange(own), vertices.copy()
    else:  # merged cells: their sheets' vertices become one
        origin = _world(np.full((1, 3), -1), view, cells.shape)[0]
        step = _world(np.zeros((1, 3), int), view, cells.shape)[0] - origin
        where = np.stack([a, b, c], axis=1)[cell_of_sheet] + 1
        alone = counts[cell_of_sheet] == 1
        world = (origin, step, np.array([xmin, ymin, zmin]), np.array([xmax, ymax, zmax]))
        node, positions, carried = merge(
            errors, vertices, where, alone, cells.signs, world, sheets()[1],
            max(tolerance * h, floor), lambda at: surface_distance(program, at, steps, target),
        )  # fmt: skip
        # Vertices that are a sheet's own (unmerged, or a block of one child): settled.
        used = np.zeros(len(positions), bool)
        used[node] = True
        kept = np.flatnonzero(used & (carried >= 0))
        settle(carried[kept])
        positions[kept] = vertices[carried[kept]]
    fan = np.zeros(len(quads), bool)
    merged, faces, folded, owner = _triangles(node[quads], positions, outward, point, fan)
    checked = np.arange(len(faces))  # the faces to check: all, then those about changes
    on_caps = capped[quads].any(axis=1)  # flat caps on the box: fans there lie in its face
    for _ in range(UNTANGLE_ROUNDS):
        # Quads that fold whichever way they are split, or with a triangle about a vertex
        # whose star crosses itself (:func:`~prospero_jax.renderers.stars.crossed`): a
        # merged block among their vertices goes back to its cells' own vertices (as if it
        # had not merged at all); where none did, the quads are fanned about their edges'
        # crossings. The quads about whatever changed are split again.
        tangled = folded.copy()
        tangled[owner[checked[crossed(merged, faces[checked])]]] = True
        merged_in = tangled & (node[quads] >= own).any(axis=1)
        blocks = np.unique(node[quads[merged_in]])
        back = np.flatnonzero(np.isin(node, blocks[blocks >= own]))
        node[back] = back
        settle(back)
        merged[back] = vertices[back]
        fresh_fans = tangled & ~merged_in & ~fan & ~on_caps
        if not len(back) and not fresh_fans.any():
            break
        fan |= fresh_fans
        redo = tangled | np.isin(quads, back).any(axis=1)
        again = np.flatnonzero(redo)
        merged, fresh, folded_again, fresh_owner = _triangles(
            node[quads[again]], merged, outward[again], point[again], fan[again]
        )
        kept_faces = ~redo[owner]
        faces = np.concatenate([faces[kept_faces], fresh])
        owner = np.concatenate([owner[kept_faces], again[fresh_owner]])
        folded = np.zeros(len(quads), bool)
        folded[again] = folded_again
        # Two triangles crossing about a vertex, one of them new: both touch the new
        # triangles' vertices (pairs of old triangles were checked already).
        touched = np.zeros(len(merged), bool)
        touched[fresh] = True
        checked = np.flatnonzero(touched[faces].any(axis=1))
    vertices = merged
    used = np.zeros(len(vertices), bool)
    used[faces] = True  # merged sheets' vertices, and those of dropped triangles, go
    box = np.clip(vertices[used], [xmin, ymin, zmin], [xmax, ymax, zmax])  # rounding aside
    return box, (np.cumsum(used) - 1)[faces]


def _resolve(
    keys: np.ndarray, configs: np.ndarray, cells: Cells
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each crossed cell's sheet of each edge (``(n, 12)``) and number of sheets, every
    ambiguous face keeping its inside corners apart, except a face that would then be a
    tunnel (:func:`tunnels`): seen from both its cells, it joins them instead (a pocket a
    cell wide becomes two, one about each corner). None if a tunnel is left that way too."""
    table, counts = sheets()
    table, counts = table[configs], counts[configs]
    bits = _tunnels()[configs]
    flips = tunnels(keys, bits, cells)
    changed = np.flatnonzero(flips)
    if not len(changed):
        return table, counts
    pairs, which = np.unique(configs[changed].astype(np.int64) * 64 + flips[changed],
                             return_inverse=True)  # fmt: skip
    rows = [_sheets_of(int(pair) // 64, int(pair) % 64) for pair in pairs]
    table[changed] = np.array([row for row, _, _ in rows], np.int8)[which]
    counts[changed] = np.array([count for _, count, _ in rows], np.int8)[which]
    bits[changed] = np.array([tunnel for _, _, tunnel in rows], np.uint8)[which]
    if tunnels(keys, bits, cells).any():
        return None
    return table, counts


def tunnels(keys: np.ndarray, bits: np.ndarray, cells: Cells) -> np.ndarray:
    """For each crossed cell (``keys``; ``bits``: its faces that are ambiguous with both
    arcs in one sheet), a bit per face that is such a face on both sides: a tube or pocket a
    cell wide passing through it, whose ring dual contouring would close with two vertices
    (four triangles on one edge)."""
    out = np.zeros(len(keys), np.uint8)
    na, nb, _ = cells.shape
    stride = (1, na + 2, (na + 2) * (nb + 2))  # a key's step along a, b, c
    for d in range(3):
        mine = np.flatnonzero(bits & (1 << (2 * d + 1)))  # the face on the high side
        if not len(mine):
            continue
        other = keys[mine] + stride[d]
        at = np.minimum(np.searchsorted(keys, other), len(keys) - 1)
        both = (keys[at] == other) & ((bits[at] & (1 << (2 * d))) != 0)  # its low side
        out[mine[both]] |= np.uint8(1 << (2 * d + 1))
        out[at[both]] |= np.uint8(1 << (2 * d))
    return out


@functools.cache
def _edge_ends_table() -> np.ndarray:
    return np.array([_edge_ends(e) for e in range(12)])


def _world(index: np.ndarray, view: View, shape: tuple[int, int, int]) -> np.ndarray:
    """Padded grid coordinates (column, row, plane; fractional) → points (x, y, z)."""
    (xmin, xmax, ymin, ymax), (zmin, zmax) = view.region, view.zrange
    na, nb, nc = shape
    step = np.array([(xmax - xmin) / (na - 1), (ymin - ymax) / (nb - 1), (zmax - zmin) / (nc - 1)])
    world: np.ndarray = np.array([xmin, ymax, zmin]) + index * step  # rows run down y
    return world


def _crossings(
    program: Program,
    start: np.ndarray,
    end: np.ndarray,
    start_inside: np.ndarray,
    guess: np.ndarray,
    near: float,
    shape: tuple[int, int, int],
    view: View,
    target: Target,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each edge ``start → end`` (grid points, one end inside; ``guess``: where the
    grid's values put the crossing, a share of the edge from its inside end) crosses the surface,
    the unit normal there, and whether the edge runs to a padding point (it crosses at
    its end in the box, with the box face's normal); others by Newton steps in the
    bracket, else bisection, until a step moves less than ``near``."""
    inner = np.where(start_inside[:, None], start, end)
    outer = np.where(start_inside[:, None], end, start)
    limit = np.array(shape) - 1
    padding = ((outer < 0) | (outer > limit)).any(axis=1)
    p_in, p_out = _world(inner, view, shape), _world(outer, view, shape)
    point = p_in.copy()
    normal = np.zeros_like(p_in)
    face = p_out[padding] - p_in[padding]
    normal[padding] = face / np.linalg.norm(face, axis=1, keepdims=True)
    field = np.flatnonzero(~padding)
    if len(field):
        a, b = p_in[field], p_out[field]
        run = b - a
        steps = np.abs(run).max(axis=1)
        t_in, t_out = np.zeros(len(field)), np.ones(len(field))
        t = np.clip(guess[field], 0.01, 0.99)  # from the inside end
        best_f = np.full(len(field), np.inf)
        best_t, best_g = t.copy(), np.zeros((len(field), 3))
        column = np.floor(((a + b) / 2)[:, :2] / (LEAF_SIDE * steps[:, None])).astype(np.int64)
        cells = column[:, 0] * (1 << 20) + column[:, 1]
        live = np.arange(len(field))  # edges whose crossing still moves
        for _ in range(CROSSING_STEPS):
            u, ab = t[live], run[live]
            value, gradient = field_gradients(
                program, a[live] + u[:, None] * ab, cells[live], target
            )
            value, gradient = value.astype(np.float64), gradient.astype(np.float64)
            # A value of exactly 0 is inside (the grid's rule), and the crossing is where
            # the inside ends: a zero is it where the field rises along the edge there,
            # or else is positive just beyond (``near`` along the edge, one more
            # evaluation); else (the field 0 along a stretch: a face of one shape lying on
            # another's) the search goes on past it.
            inside = value <= 0
            slope = np.einsum("ij,ij->i", gradient, ab)
            zero = np.flatnonzero((value == 0) & ~(slope > 0))
            if len(zero):
                at, beyond = live[zero], u[zero] + near / steps[live[zero]]
                probe, _ = field_gradients(
                    program, a[at] + np.minimum(beyond, 1.0)[:, None] * run[at], cells[at],
                    target,
                )  # fmt: skip
                stretch = (probe <= 0) & (beyond < t_out[at])
                value[zero[stretch]] = np.inf  # not a crossing: inside, the bracket moves on
                u[zero[stretch]] = beyond[stretch]
            better = np.abs(value) < best_f[live]
            best_f[live] = np.where(better, np.abs(value), best_f[live])
            best_t[live] = np.where(better, u, best_t[live])
            best_g[live] = np.where(better[:, None], gradient, best_g[live])
            t_in[live] = np.where(inside, u, t_in[live])
            t_out[live] = np.where(inside, t_out[live], u)
            with np.errstate(all="ignore"):
                newton = u - value / slope
            fine = np.isfinite(newton) & (newton > t_in[live]) & (newton < t_out[live])
            t[live] = np.where(fine, newton, (t_in[live] + t_out[live]) / 2)
            live = live[(value != 0) & (np.abs(t[live] - u) * steps[live] > near)]
            if not len(live):
                break
        point[field] = a + best_t[:, None] * run
        length = np.linalg.norm(best_g, axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            unit = np.where(length > 0, best_g / length, 0.0)
        normal[field] = np.nan_to_num(unit)
    return point, normal, np.asarray(padding, bool)


def _in_empty_neighbour(
    points: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    steps: np.ndarray,
    keys: np.ndarray,
    cells: Cells,
    view: View,
) -> np.ndarray:
    """Whether each point lies within a cell of its own cell ``[lo, hi]``, in the box, in
    a cell that is not crossed (not in ``keys``)."""
    (xmin, xmax, ymin, ymax), (zmin, zmax) = view.region, view.zrange
    box_lo, box_hi = np.array([xmin, ymin, zmin]), np.array([xmax, ymax, zmax])
    near = ((points >= lo - steps) & (points <= hi + steps)).all(axis=1)
    near &= ((points >= box_lo) & (points <= box_hi)).all(axis=1)
    grid = np.stack(
        [(points[:, 0] - xmin) / steps[0], (ymax - points[:, 1]) / steps[1],
         (points[:, 2] - zmin) / steps[2]], axis=1,
    )  # fmt: skip
    na, nb, nc = cells.shape
    index = np.clip(np.floor(np.nan_to_num(grid)), -1, np.array([na, nb, nc]) - 1).astype(np.int64)
    key = cells.key(index[:, 0], index[:, 1], index[:, 2])
    at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    return np.asarray(near & (keys[at] != key), bool)


def _nearest(
    point: np.ndarray, sheet: np.ndarray, vertices: np.ndarray, chosen: np.ndarray
) -> np.ndarray:
    """For each sheet in ``chosen``, its crossing (``point``, of sheet ``sheet``) nearest
    ``vertices[sheet]``."""
    mine = np.flatnonzero(np.isin(sheet, chosen))
    gap = np.linalg.norm(point[mine] - vertices[sheet[mine]], axis=1)
    order = np.lexsort((gap, sheet[mine]))  # by sheet, nearest first
    ordered = sheet[mine][order]
    first = order[np.r_[True, ordered[1:] != ordered[:-1]]]
    best = dict(zip(sheet[mine][first].tolist(), point[mine][first], strict=True))
    return np.array([best[s] for s in chosen.tolist()])


def _triangles(
    quads: np.ndarray,
    vertices: np.ndarray,
    outward: np.ndarray,
    centres: np.ndarray,
    fan: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(vertices, faces, folded, owner)``: the vertices with any centres added;
    triangles of the quads ``[p, q, r, s]`` (each about a crossed edge that leaves the
    solid along ``outward`` and crosses the surface at ``centres``); which quads fold
    whichever way they are split; the quad of each triangle. Each quad is split along the
    shorter diagonal whose two triangles both face ``outward`` (seen along the edge, they
    turn the right way about it, so they cannot fold over each other), else into four
    triangles about its edge's crossing (which face it while the quad's vertices lie in
    their cells); triangles with a repeated vertex (a quad two of whose cells merged) are
    left out, and quads merged into one vertex are not split at all."""
    some = np.flatnonzero((quads[:, 1:] != quads[:, :1]).any(axis=1))  # not merged to a point
    vertices, faces, folded_some, owner = _split(
        quads[some], vertices, outward[some], centres[some], fan[some]
    )
    folded = np.zeros(len(quads), bool)
    folded[some] = folded_some
    return vertices, faces, folded, some[owner]


def _split(
    quads: np.ndarray,
    vertices: np.ndarray,
    outward: np.ndarray,
    centres: np.ndarray,
    fan: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_triangles` of quads with two vertices or more."""
    p, q, r, s = (quads[:, k] for k in range(4))
    # The corners and the edge's crossing ("x", a new vertex where the quad is fanned).
    corners = {"p": vertices[p], "q": vertices[q], "r": vertices[r], "s": vertices[s]}
    corners["x"] = centres
    ids = {"p": p, "q": q, "r": r, "s": s, "x": np.full(len(quads), -1)}
    # Seen along its edge (``outward`` lies along a grid axis), each corner's two
    # coordinates across it, in the order that makes the axis their cross product.
    axis = np.argmax(np.abs(outward), axis=1)
    flat = 3 * np.arange(len(quads))
    sign = np.sign(np.take(outward, flat + axis))
    u_at, w_at = flat + (axis + 1) % 3, flat + (axis + 2) % 3
    across = {x: (np.take(c, u_at), np.take(c, w_at)) for x, c in corners.items()}

    def turns(names: str) -> np.ndarray:
        """Whether the triangle of these corners faces outward (or is a point or a
        segment: a quad two of whose cells merged)."""
        (au, aw), (bu, bw), (cu, cw) = (across[x] for x in names)
        facing = sign * ((bu - au) * (cw - aw) - (bw - aw) * (cu - au))
        i, j, k = (ids[x] for x in names)
        return np.asarray((facing >= 0) | (i == j) | (j == k) | (i == k), bool)

    pr_fine = turns("pqr") & turns("prs")
    qs_fine = turns("pqs") & turns("qrs")
    pr = np.linalg.norm(corners["p"] - corners["r"], axis=1)
    qs = np.linalg.norm(corners["q"] - corners["s"], axis=1)
    along_pr = pr_fine & (~qs_fine | (pr <= qs))
    split = (pr_fine | qs_fine) & ~fan
    first = np.stack([p, q, np.where(along_pr, r, s)], 1)  # p q r, or p q s
    second = np.stack([np.where(along_pr, p, q), r, s], 1)  # p r s, or q r s
    if not split.all():
        first, second = first[split], second[split]
    fan = np.flatnonzero(~split)
    centre = len(vertices) + np.arange(len(fan))
    vertices = np.concatenate([vertices, centres[fan]])
    fans = [np.stack([quads[fan, k], quads[fan, (k + 1) % 4], centre], 1) for k in range(4)]
    folded = np.zeros(len(quads), bool)
    if len(fan):
        around = turns("pqx") & turns("qrx") & turns("rsx") & turns("spx")
        folded[fan] = ~around[fan]
    faces = np.concatenate([first, second, *fans]).astype(np.int64, copy=False)
    owner = np.concatenate([np.flatnonzero(split)] * 2 + [fan] * 4)
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
    distinct &= faces[:, 0] != faces[:, 2]
    if distinct.all():  # nothing merged here: no copies
        return vertices, faces, folded, owner
    return vertices, faces[distinct], folded, owner[distinct]
