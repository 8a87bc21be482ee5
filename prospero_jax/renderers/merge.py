"""Merging dual contouring's cells bottom-up where one vertex still fits the surface.

Input: each sheet's quadratic error function (:class:`Errors`: sums over its crossings of
``n nᵀ``, ``n (n · p)``, ``(n · p)²``, ``p``, ``n`` and their count), the cell of each
sheet and how many sheets that cell holds, the grid's signs (:class:`Signs`), the box, a
``limit`` (the tolerance, a distance) and the field's distance estimate.
Output: for each sheet, the vertex that stands for it (:func:`merge`'s ``node``), and each
vertex's position; a vertex stands for a block of ``2^L`` cells a side.

Invariants (Ju et al.'s conditions for dual contouring on an octree, and one sheet per
block): a block of ``2 × 2 × 2`` children merges only if every child is empty or merged
itself (or, at the first level, a cell with one sheet); the block's corners make one sheet
(:func:`~prospero_jax.renderers.dual.sheets`); the sign in the middle of each of its edges
agrees with one of the edge's ends, in the middle of each face with one of its corners, in
its middle with one of its corners (so the surface in the block is one disk, as the
block's corners say); and the merged vertex, the minimum of the children's summed error
clamped to the block and the box, lies within ``limit`` (root mean square) of its
crossings' planes and of the surface. A mesh whose quads are remapped through ``node`` is then the
adaptive dual contouring of the octree the merges make.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

#: Eigenvalues of an error below this share of its largest are dropped (as for a cell).
QEF_CUTOFF = 0.1
#: Most levels of merging: blocks of up to 2^LEVELS cells a side.
LEVELS = 6


class Errors(NamedTuple):
    """Quadratic error functions, one per row: ``E(x) = xᵀ A x - 2 bᵀ x + c`` (``a``:
    ``(n, 3, 3)``, ``b``: ``(n, 3)``, ``c``: ``(n,)``), the sums of the crossings' points
    (``mass``) and unit normals (``normals``), and how many crossings (``crossings``)."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    mass: np.ndarray
    normals: np.ndarray
    crossings: np.ndarray

    @classmethod
    def of(cls, point: np.ndarray, normal: np.ndarray, sheets: np.ndarray, count: int) -> Errors:
        """The errors of ``count`` sheets from their crossings (``point``, unit ``normal``,
        ``(n, 3)``) and the sheets each counts for (``sheets``: ``(n, k)``)."""
        columns = [np.ascontiguousarray(sheets[:, k]) for k in range(sheets.shape[1])]

        def per_sheet(values: np.ndarray) -> np.ndarray:
            out = np.bincount(columns[0], values, count)
            for column in columns[1:]:
                out += np.bincount(column, values, count)
            return out

        offset = np.einsum("ij,ij->i", normal, point)
        a = np.zeros((count, 3, 3))
        for i in range(3):
            for j in range(i, 3):
                a[:, i, j] = a[:, j, i] = per_sheet(normal[:, i] * normal[:, j])
        b = np.stack([per_sheet(normal[:, k] * offset) for k in range(3)], axis=1)
        mass = np.stack([per_sheet(point[:, k]) for k in range(3)], axis=1)
        normals = np.stack([per_sheet(normal[:, k]) for k in range(3)], axis=1)
        crossings = sum(np.bincount(column, minlength=count) for column in columns)
        crossings = np.asarray(crossings, np.float64)
        return cls(a, b, per_sheet(offset * offset), mass, normals, crossings)

    def summed(self, group: np.ndarray, groups: int) -> Errors:
        """The sums of the rows in each ``group``."""

        def add(x: np.ndarray) -> np.ndarray:
            flat = x.reshape(len(x), -1)
            out = np.stack(
                [np.bincount(group, flat[:, k], groups) for k in range(flat.shape[1])], 1
            )
            return out.reshape(groups, *x.shape[1:])

        return Errors(*(add(field) for field in self))

    def minimum(
        self, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's minimiser about its crossings' mean (eigenvalues under
        :data:`QEF_CUTOFF` of the largest dropped), clamped to ``[lo, hi]`` if given; and
        the root mean square distance from the planes there. Rows whose normals all but
        agree (``|mean n|² ≥ 1 - QEF_CUTOFF / 2``: every eigenvalue but the largest under
        the cutoff) take the one-plane solution, with no eigendecomposition."""
        count = np.maximum(self.crossings, 1)
        mean = self.mass / count[:, None]
        rest = self.b - np.einsum("nij,nj->ni", self.a, mean)
        direction = self.normals / count[:, None]
        aligned = np.einsum("ij,ij->i", direction, direction)
        flat = aligned >= 1 - QEF_CUTOFF / 2
        with np.errstate(all="ignore"):  # one plane: along its normal (the mean normal)
            along = np.where(aligned > 0, np.einsum("ij,ij->i", direction, rest) / aligned, 0)
        x = mean + direction * np.where(flat, along / count, 0)[:, None]
        bent = np.flatnonzero(~flat)
        if len(bent):
            values, vectors = np.linalg.eigh(self.a[bent])
            keep = values > QEF_CUTOFF * values[:, -1:]
            inverse = np.where(keep, 1 / np.where(keep, values, 1), 0)
            x[bent] += np.einsum("nij,nj,nkj,nk->ni", vectors, inverse, vectors, rest[bent])
        if lo is not None and hi is not None:
            x = np.clip(x, lo, hi)
        ax = np.einsum("nij,nj->ni", self.a, x)
        error = np.einsum("ni,ni->n", x, ax - 2 * self.b)
        return x, np.sqrt(np.maximum(error + self.c, 0) / count)


class Signs:
    """The grid's signs, packed 8 points to a byte: inside where ``≤ 0``; the grid padded
    with one outside point all round (points ``-1…n`` on each axis), outside beyond."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        na, nb, nc = shape
        self.shape = (na + 2, nb + 2, nc + 2)  # padded points per axis: a, b, c
        self.bits = np.zeros((nc + 2, nb + 2, -(-(na + 2) // 8)), np.uint8)

    def store(self, packed: np.ndarray, first: int) -> None:
        """Padded planes ``first…`` (``packed``: ``[plane, row, column byte]``, the signs
        packed along the rows by ``np.packbits``, rows and columns padded already)."""
        self.bits[first : first + len(packed)] = packed

    def inside(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Whether padded points ``(a, b, c)`` (from 0) are inside; beyond the grid, no."""
        na, nb, nc = self.shape
        within = (a >= 0) & (a < na) & (b >= 0) & (b < nb) & (c >= 0) & (c < nc)
        at = (c * nb + b) * self.bits.shape[2] + (a >> 3)
        byte = self.bits.ravel()[np.where(within, at, 0)]
        return np.asarray(within & (((byte >> (7 - (a & 7))) & 1) == 1), bool)


def merge(
    errors: Errors,
    vertices: np.ndarray,
    cell: np.ndarray,
    alone: np.ndarray,
    signs: Signs,
    world: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sheet_counts: np.ndarray,
    limit: float,
    distance: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(node, positions, carried)``: the vertex each sheet merges into, the vertices'
    positions (module docstring), and for each vertex the sheet whose own vertex it
    carries (-1: a merged one; a block with one child keeps that child's vertex).
    ``cell``: each sheet's cell, padded coordinates from 0 (``(n, 3)``: a, b, c);
    ``alone``: whether it is its cell's only sheet; ``world``: ``(origin, step, lo, hi)``,
    a padded point's position is ``origin + index · step`` and the box is ``[lo, hi]``;
    ``sheet_counts``: the sheets of each configuration; ``limit``: the tolerance as a
    distance; ``distance(points)``: the distance estimate ``|f| / |∇f|`` there (a merged
    vertex must lie within the limit of the surface too: planes that meet where the
    surface does not, a step's two faces, do not merge); a ``limit`` of ``0`` or less
    merges nothing."""
    origin, step, box_lo, box_hi = world
    positions = vertices.copy()
    carried = np.arange(len(vertices))
    if limit <= 0 or not len(vertices):
        return np.arange(len(vertices)), positions, carried
    final = np.where(alone, -1, np.arange(len(vertices)))  # each sheet's vertex, once known
    # The live nodes: each stands for its whole block at this level (so may merge further):
    # their error, block, position and vertex; each sheet's live node (-1: none).
    live = np.flatnonzero(alone)
    if len(live) == len(vertices):  # every sheet alone in its cell: no copies
        current, block, at = errors, cell, vertices
    else:
        current, block, at = Errors(*(f[live] for f in errors)), cell[live], vertices[live]
    ids, source = live.copy(), live.copy()
    of_sheet = np.full(len(vertices), -1)
    of_sheet[live] = np.arange(len(live))
    dead = cell[~alone]  # blocks holding a node that cannot merge
    made = len(positions)  # vertices so far; the merged blocks' come in the lists below
    new_positions: list[np.ndarray] = []
    new_carried: list[np.ndarray] = []
    for level in range(1, LEVELS + 1):
        if not len(ids):
            break
        size = 1 << level
        parent = block >> 1
        span = int(max(parent.max(initial=0), (dead >> 1).max(initial=0))) + 1

        def number(x: np.ndarray, span: int = span) -> np.ndarray:
            return np.asarray((x[:, 2] * span + x[:, 1]) * span + x[:, 0], np.int64)

        numbers, group = _groups(number(parent))
        keys = np.stack([numbers % span, numbers // span % span, numbers // span // span], 1)
        groups = len(keys)
        ok = np.ones(len(numbers), bool)  # no child that cannot merge
        poisoned = number(dead >> 1)
        hit = np.minimum(np.searchsorted(numbers, poisoned), len(numbers) - 1)
        ok[hit[numbers[hit] == poisoned]] = False
        base = keys * size  # each block's lowest padded point
        summed = current.summed(group, groups)
        corner_lo, corner_hi = origin + base * step, origin + (base + size) * step
        lo = np.maximum(np.minimum(corner_lo, corner_hi), box_lo)
        hi = np.minimum(np.maximum(corner_lo, corner_hi), box_hi)
        x, rms = summed.minimum(lo, hi)
        single = np.bincount(group, minlength=groups) == 1  # one child: it stays where it is
        only = np.flatnonzero(single[group])[np.argsort(group[single[group]])]
        x[single] = at[only]
        sources = np.full(groups, -1)
        sources[single] = source[only]
        ok &= single | (rms <= limit)
        disk = np.flatnonzero(ok)  # the sign tests last: on curved parts few blocks get here
        ok[disk] = _one_disk(signs, base[disk], size, sheet_counts)
        check = np.flatnonzero(ok & ~single)
        ok[check] = distance(x[check]) <= limit
        merged = ok[group]
        # The nodes of blocks that did not merge are final; their blocks poison parents.
        stopped = np.flatnonzero(~merged)
        halted = np.zeros(len(ids) + 1, bool)  # a node's entry; the last: no node (-1)
        halted[stopped] = True
        sheets_stopped = halted[of_sheet]
        final[sheets_stopped] = ids[of_sheet[sheets_stopped]]
        dead = np.concatenate([dead >> 1, parent[stopped]])
        if not ok.any():
            of_sheet[:] = -1
            break
        fresh = made + np.arange(int(ok.sum()))
        made += len(fresh)
        new_positions.append(x[ok])
        new_carried.append(sources[ok])
        rank = np.cumsum(ok) - 1  # a merged block's place among the new nodes
        moving = of_sheet >= 0
        of_sheet[moving] = np.where(merged[of_sheet[moving]], rank[group[of_sheet[moving]]], -1)
        current = Errors(*(f[ok] for f in summed))
        block, at, ids, source = keys[ok], x[ok], fresh, sources[ok]
    left = of_sheet >= 0
    final[left] = ids[of_sheet[left]]
    return (
        final,
        np.concatenate([positions, *new_positions]),
        np.concatenate([carried, *new_carried]),
    )


def _groups(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(numbers, return_inverse=True)``, by a stable sort: the numbers come in
    runs (cells in order, so their blocks nearly so), which it takes whole (3× faster at a
    million sheets)."""
    order = np.argsort(numbers, kind="stable")
    ordered = numbers[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.empty(len(numbers), np.int64)
    group[order] = np.cumsum(first) - 1
    return ordered[first], group


def _one_disk(signs: Signs, base: np.ndarray, size: int, sheet_counts: np.ndarray) -> np.ndarray:
    """Ju's conditions for blocks of ``size`` cells at ``base`` (module docstring)."""
    half = size // 2
    lattice = {}
    for i in range(3):
        for j in range(3):
            for k in range(3):
                lattice[i, j, k] = signs.inside(
                    base[:, 0] + i * half, base[:, 1] + j * half, base[:, 2] + k * half
                )
    config = np.zeros(len(base), np.uint8)
    for n in range(8):
        config |= lattice[2 * (n & 1), 2 * (n >> 1 & 1), 2 * (n >> 2 & 1)].astype(np.uint8) << n
    ok = sheet_counts[config] == 1
    for (i, j, k), mid in lattice.items():
        middles = [axis for axis, v in enumerate((i, j, k)) if v == 1]
        if not middles:
            continue
        ends = []  # the corners of the edge, face or cube this point is the middle of
        for n in range(1 << len(middles)):
            at = [i, j, k]
            for bit, axis in enumerate(middles):
                at[axis] = 2 * (n >> bit & 1)
            ends.append(lattice[at[0], at[1], at[2]])
        stacked = np.stack(ends)
        same = stacked.all(axis=0) | (~stacked).all(axis=0)  # every corner one sign
        ok &= ~(same & (stacked[0] != mid))
    return np.asarray(ok, bool)
