"""Meshes: a solid (a program of x, y, z) → a triangle mesh of its surface.

Input: a Program, a solid's :class:`~prospero_jax.renderers.view.View` (the grid: ``size``
points along x and y over its region, ``samples`` along z over its ``zrange``, turned by
its ``rotation``), or a ``resolution`` (points per axis over the cube ``bounds³``), and a
target.
Output: a :class:`Mesh`: ``vertices`` ``(V, 3)`` float64 and ``faces`` ``(F, 3)`` int64,
triangles wound counter-clockwise seen from outside (where the value is > 0), closed: the
solid is met as if everything outside the box were outside it, so where it crosses the
box's faces the mesh is capped there, flat (a :class:`MeshWarning` says so).

How: one walk of the octree over the grid (:func:`~prospero_jax.renderers.octree.walk`)
proves most boxes of grid points inside or outside; only the leaf boxes it leaves
ambiguous are evaluated, a layer of planes at a time (the leaf kernel, values). Proved
boxes get a stand-in of the right sign (-1 inside, +1 outside): no surface crosses them.
The grid is read in slabs of :data:`SLAB` cells along z (a plane shared by two slabs is
evaluated once) and padded with a layer of outside points around the box (the end slabs
below and above too), whose crossings lie on the box's faces: the caps.

- ``method="dual"`` (the default): each slab's crossed cells are kept, and dual contouring
  (:mod:`~prospero_jax.renderers.dual`) finds the crossings on the surface, a vertex per
  sheet of each cell where their planes meet, and merges cells where one vertex fits
  (:mod:`~prospero_jax.renderers.merge`): sharp edges kept, flat parts in few triangles.
  Its grid is moved :data:`OFFSET` of a cell off the box's corner, so that no face of the
  solid at a round coordinate lies on a plane of grid points (where the vertices of the
  cells on both sides would meet and fold); the vertices are clipped to the box.
- ``method="cubes"``: each slab goes to scikit-image's marching cubes (Lewiner's variant,
  which resolves the ambiguous cube configurations consistently), equal vertices of
  neighbouring slabs are merged, and vertices off the caps take a few Newton steps onto
  the surface, kept in the box.

Memory grows with the surface: a slab of planes at a time, the crossed cells, and every
grid point's sign packed 8 to a byte (:func:`check_mesh` counts them).

Files: :mod:`prospero_jax.io.mesh_file` writes meshes (STL, PLY, OBJ).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import NamedTuple, Unpack

import numpy as np
from jaxtyping import Float, Int

from prospero_jax.ir.program import Program
from prospero_jax.renderers.dual import Cells, contour
from prospero_jax.renderers.gradients import onto_surface
from prospero_jax.renderers.heightmap import check_solid
from prospero_jax.renderers.hierarchy import SLAB, Frontier, leaf_pixels, root_side
from prospero_jax.renderers.octree import THICK, walk
from prospero_jax.renderers.tile_grid import as_tiles
from prospero_jax.renderers.view import (
    REGION_LIMIT,
    InvalidView,
    Progress,
    Shorthand,
    Target,
    View,
    check_count,
    check_samples,
    resolve,
)

#: How a mesh is made: dual contouring (:mod:`~prospero_jax.renderers.dual`) or marching
#: cubes.
METHODS = ("dual", "cubes")
#: Dual contouring merges cells while one vertex stays within this many cells (root mean
#: square) of their crossings' planes: flat parts merge, curved ones (whose planes miss a
#: common point by more) keep the grid's cells.
TOLERANCE = 1e-4
#: Most bytes a mesh's grid may hold at once: a slab of planes (with marching cubes' copy
#: of it) and every point's sign.
SLAB_MEMORY = 2 * 2**30
#: A grid value of exactly 0 is read as ``-ZERO``: inside (a face of the cube
#: ``max(|x|, |y|, |z|) - 0.5`` on grid points stays sharp), and far enough from 0 that
#: the crossings around it stay distinct in float64.
ZERO = 1e-12
#: Dual contouring moves the grid this share of a cell along each axis (towards +x, +y,
#: +z) from the box's corner: a face of the solid on a "round" coordinate (0.6, a cube's ±0.5) would
#: otherwise lie on a plane of grid points at some resolutions (101, 151 over ±1), where
#: the field is exactly 0, the crossings of the edges that meet there coincide, and the
#: vertices of the cells on both sides of that plane fall onto it and fold. An irrational
#: share (e / 100) puts no such coordinate on the grid, nor within 2.7 % of a cell of it
#: (e / 1000 left a plate 0.01 thick, cut by such planes, folded at the cut); the vertices
#: are then clipped to the box, so the caps on its faces move by at most this share.
OFFSET = 0.027182818284590


class Mesh(NamedTuple):
    """A triangle mesh: ``faces[i]`` are three indices into ``vertices``."""

    vertices: Float[np.ndarray, "v 3"]
    faces: Int[np.ndarray, "f 3"]


class MeshWarning(UserWarning):
    """A mesh that is not all of the solid's surface: empty (nothing inside the bounds),
    or closed by the bounds' faces (the solid fills them, or crosses them)."""


def mesh_view(resolution: int, bounds: tuple[float, float] = (-1.0, 1.0)) -> View:
    """The solid's :class:`View` of the cube ``bounds³`` sampled at ``resolution`` points
    per axis (``InvalidView`` naming ``resolution`` or ``bounds``)."""
    resolution = check_count("resolution", resolution, 4)
    check_samples("resolution", resolution**3, f"a {resolution}³ grid")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise InvalidView(
            "bounds", f"bounds must be two numbers (low, high), got {bounds!r}"
        ) from None
    if not (abs(lo) <= REGION_LIMIT and abs(hi) <= REGION_LIMIT):  # NaN and ±inf fail this
        raise InvalidView(
            "bounds",
            f"bounds must be finite, at most {REGION_LIMIT:g} in magnitude: got {lo:g}, {hi:g}",
        )
    if not lo < hi:
        raise InvalidView(
            "bounds", f"bounds must be (low, high) with low < high, got {lo:g}, {hi:g}"
        )
    try:
        return View(resolution, (lo, hi, lo, hi), depth=resolution, zrange=(lo, hi))
    except InvalidView as err:  # the cube's side is the resolution
        field = "resolution" if err.field in ("size", "depth") else "bounds"
        raise InvalidView(field, str(err)) from None


def check_mesh(view: View, dtype: str) -> View:
    """``view`` if a mesh of its grid (``size² × samples`` points) fits the limits of time
    and memory, else ``InvalidView``; checked before anything is allocated. Memory: a slab
    of planes (the values and marching cubes' float64 copy) and every point's sign, packed
    8 to a byte (dual contouring's merging reads them), within :data:`SLAB_MEMORY`."""
    if view.rows is not None:
        raise InvalidView("rows", "a mesh is of the whole view: give no rows")
    side, depth = view.size, view.samples
    if side < 4 or depth < 4:
        raise InvalidView("size", f"a mesh needs at least 4 points per axis, got {side}² × {depth}")
    check_samples("resolution", side * side * depth, f"a {side}² × {depth} grid")

    def needed(side: int, depth: int) -> int:  # bytes: planes padded to a power of two
        planes = (SLAB + 1) * root_side(side) ** 2 * (np.dtype(dtype).itemsize + 8)
        return planes + (depth + 2) * (side + 2) * -(-(side + 2) // 8)

    if needed(side, depth) > SLAB_MEMORY:
        largest = root_side(side) // 2
        while needed(largest, largest) > SLAB_MEMORY:
            largest //= 2
        raise InvalidView(
            "resolution",
            f"a {side}² × {depth} grid in {dtype} needs {needed(side, depth) / 2**30:.1f} "
            f"GiB for a slab of {SLAB + 1} planes and the grid's signs, above the "
            f"{SLAB_MEMORY / 2**30:.0f} GiB limit: at most {largest}³ in {dtype}",
        )
    return view


def mesh(
    program: Program,
    resolution: int | View = 128,
    *,
    bounds: tuple[float, float] | None = None,
    method: str = "dual",
    tolerance: float = TOLERANCE,
    project: bool = True,
    progress: Progress | None = None,
    **options: Unpack[Shorthand],
) -> Mesh:
    """The surface ``value = 0`` of ``program`` in a solid's box, sampled on a grid
    (module docstring), by dual contouring (``method="dual"``: a vertex per sheet of each
    crossed cell, cells merged while one vertex stays within ``tolerance`` cells of their
    surface; :mod:`~prospero_jax.renderers.dual`) or marching cubes (``"cubes"``);
    ``project`` moves the vertices onto the surface; ``progress(done, total)`` counts
    slabs (and, by dual contouring, the contouring as one more).

    The box is a :class:`View`'s (``region × zrange``, ``size² × samples`` points, turned by
    its ``rotation``: vertices are in the view's frame), or the cube ``bounds³`` (default
    ``(-1, 1)``) at ``resolution`` points per axis. Where to run: ``target``, or ``dtype``,
    ``device`` (:class:`Shorthand`).

    Refused before any work: a 2-D program, a grid beyond the limits of time and memory,
    bounds that are not finite. An empty or capped result is returned with a
    :class:`MeshWarning` saying why (nothing inside, all inside, or the solid cut by the
    bounds' faces, where it is closed with flat caps)."""
    from skimage.measure import marching_cubes

    if isinstance(resolution, View):
        if bounds is not None:
            raise ValueError("give the bounds as the View's region and zrange, not beside it")
        view, target = resolve(resolution, options)
    else:
        view, target = resolve(mesh_view(resolution, bounds or (-1.0, 1.0)), options)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0 <= tolerance < float("inf"):  # NaN fails this too
        raise InvalidView("tolerance", f"tolerance must be a finite number ≥ 0, got {tolerance}")
    check_mesh(view, target.dtype)
    check_solid(program)
    given = (program, view)
    program, posed = view.pose(program)
    view = _offset(posed) if method == "dual" else posed  # marching cubes: ZERO's rule
    side, planes_count = view.size, view.samples
    xmin, xmax, ymin, ymax = view.region
    zmin, zmax = view.zrange
    step = np.array([(xmax - xmin), (ymax - ymin), (zmax - zmin)]) / (
        np.array([side, side, planes_count]) - 1
    )
    padded = root_side(side)
    # As images have it: x along columns, y down the rows (row 0 at the top); z along planes.
    xs, ys = view.axes()
    xs = np.pad(xs, (0, padded - side), mode="edge").astype(target.dtype)
    ys = np.pad(ys, (0, padded - side), mode="edge").astype(target.dtype)
    samples = root_side(planes_count, THICK)
    zs = np.pad(view.zs()[::-1], (0, samples - planes_count), mode="edge").astype(target.dtype)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    cells = Cells((side, side, planes_count))
    signs = _Signs()
    slabs = range(0, planes_count - 1, SLAB)
    with target.precision(), np.errstate(all="ignore"):
        grid = _Grid(program, xs, ys, zs, padded, target)
        for done, first in enumerate(slabs, 1):
            last = min(first + SLAB, planes_count - 1)
            planes = grid.planes(first, last)
            block = planes[:, :side, :side]  # [z, y, x]
            if not np.isfinite(block).all():  # NaN is outside (as images have it), ±inf ±1
                block = np.where(
                    np.isnan(block), 1.0, np.where(np.isinf(block), np.sign(block), block)
                )
            bottom, top = first == 0, last == planes_count - 1
            signs.see(block, bottom, top)
            if method == "dual":
                cells.see(block, first, bottom, top)
            elif (block < 0).any():
                # Closed at the bounds: outside the box is outside the solid (a layer of
                # +1 around the grid; the bottom and top layers only in the end slabs).
                below = int(bottom)
                pad = ((below, int(top)), (1, 1), (1, 1))
                closed = np.pad(block.astype(np.float64), pad, constant_values=1)
                # A grid value of 0 is on the surface: moved a hair inside (-ZERO), so the
                # crossings on the edges that meet there stay apart (at it, they would merge).
                closed[closed == 0] = -ZERO
                verts, faces, _, _ = marching_cubes(  # type: ignore[no-untyped-call]
                    closed, level=0.0, allow_degenerate=False, gradient_direction="ascent"
                )
                index = verts - [below, 1, 1]  # plane, row, column indices (fractional)
                capped = ((index < 0) | (index > [last - first, side - 1, side - 1])).any(1)
                k, row, col = np.clip(index, 0, [last - first, side - 1, side - 1]).T
                space = np.stack(
                    [xmin + col * step[0], ymax - row * step[1], zmin + (first + k) * step[2]], 1
                )
                parts.append((space, faces[:, ::-1], capped))  # rows run down y: rewound
            if progress is not None:  # dual contouring's last step counts as one slab more
                progress(done, len(slabs) + (method == "dual"))
        if method == "dual":
            contoured = contour(program, cells, view, target, project, tolerance)
            if contoured is None:  # a tube a cell wide through a cell face: not manifold
                warnings.warn(
                    MeshWarning(
                        f"{program.source}: a tunnel a cell wide passes through a cell face: "
                        "meshed by marching cubes instead, which cuts sharp edges (a higher "
                        "resolution keeps them)"
                    ),
                    stacklevel=2,
                )
                return mesh(*given, method="cubes", project=project, progress=progress,
                            target=target)  # fmt: skip
            vertices, faces = contoured
            if progress is not None:
                progress(len(slabs) + 1, len(slabs) + 1)
            signs.warn(program.source, posed)
            return Mesh(_in_box(vertices, posed), faces)
        vertices, faces, capped = _merged(parts)
        if project and len(vertices):
            on = ~capped  # the caps lie on the box's faces, not on the surface
            low, high = np.array([xmin, ymin, zmin]), np.array([xmax, ymax, zmax])
            vertices[on], _ = onto_surface(program, vertices[on], step, target, low, high)
    signs.warn(program.source, posed)
    return Mesh(_in_box(vertices, posed), faces)


def _offset(view: View) -> View:
    """``view``'s grid moved :data:`OFFSET` of a cell towards +x, +y and +z."""
    xmin, xmax, ymin, ymax = view.region
    zmin, zmax = view.zrange
    dx, dy = OFFSET * (xmax - xmin) / (view.size - 1), OFFSET * (ymax - ymin) / (view.size - 1)
    dz = OFFSET * (zmax - zmin) / (view.samples - 1)
    return replace(
        view,
        region=(xmin + dx, xmax + dx, ymin + dy, ymax + dy),
        zrange=(zmin + dz, zmax + dz),
    )


def _in_box(vertices: np.ndarray, view: View) -> np.ndarray:
    """``vertices`` clipped to ``view``'s box (the grid was moved a hair past its top)."""
    xmin, xmax, ymin, ymax = view.region
    zmin, zmax = view.zrange
    return np.asarray(np.clip(vertices, [xmin, ymin, zmin], [xmax, ymax, zmax]))


class _Signs:
    """What the grid held: any point inside, any outside, any inside on the bounds' faces."""

    def __init__(self) -> None:
        self.inside = self.outside = self.cut = False

    def see(self, block: np.ndarray, bottom: bool, top: bool) -> None:
        self.inside |= bool((block < 0).any())
        self.outside |= bool((block >= 0).any())
        faces = [block[:, [0, -1], :], block[:, :, [0, -1]]]
        faces += [block[:1]] if bottom else []
        faces += [block[-1:]] if top else []
        self.cut |= any(bool((face < 0).any()) for face in faces)

    def warn(self, source: str, view: View) -> None:
        (xmin, xmax, ymin, ymax), (zmin, zmax) = view.region, view.zrange
        if xmin == ymin == zmin and xmax == ymax == zmax:
            cube = f"the bounds [{xmin:g}, {xmax:g}]³"
        else:
            cube = f"the box [{xmin:g}, {xmax:g}] × [{ymin:g}, {ymax:g}] × [{zmin:g}, {zmax:g}]"
        if not self.inside:
            why = f"{source}: the mesh is empty: no grid point in {cube} is inside the solid"
        elif not self.outside:
            why = (f"{source}: the solid fills {cube}: the mesh is their surface "
                   "(widen the bounds)")  # fmt: skip
        elif self.cut:
            why = (f"{source}: the solid reaches the faces of {cube}: the mesh is closed "
                   "there with flat caps (widen the bounds to mesh all of it)")  # fmt: skip
        else:
            return
        warnings.warn(MeshWarning(why), stacklevel=3)


class _Grid:
    """The grid's values, plane by plane, from one octree walk (:func:`~prospero_jax.
    renderers.octree.walk`): the values at the points of the leaf boxes it leaves
    ambiguous, -1 in boxes proved inside, +1 elsewhere (proved outside). Each layer of
    :data:`~prospero_jax.renderers.octree.THICK` planes is evaluated once, when a slab
    first asks for it, so a plane two slabs share is the same array in both."""

    def __init__(
        self, program: Program, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, side: int,
        target: Target,
    ) -> None:  # fmt: skip
        self.xs, self.ys, self.zs, self.side, self.target = xs, ys, zs, side, target
        self.inside: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, int]] = []
        self.leaves: dict[int, Frontier] = {}
        self.layers: dict[int, np.ndarray] = {}

        def inside(
            side: int, rows: np.ndarray, cols: np.ndarray, tops: np.ndarray, thick: int
        ) -> None:
            if len(rows):
                self.inside.append((side, rows, cols, tops, thick))

        def leaves(part: Frontier, tops: np.ndarray) -> None:
            self.leaves[int(tops[0])] = part  # one layer a call

        walk(program, xs, ys, zs, target, inside, leaves)

    def planes(self, first: int, last: int) -> np.ndarray:
        """Planes ``first..last`` (``(planes, side, side)``, ``[z, y, x]``)."""
        planes = np.ones((last - first + 1, self.side, self.side), self.target.dtype)
        for i, p in enumerate(range(first, last + 1)):
            for side, rows, cols, tops, thick in self.inside:
                hit = (tops <= p) & (p < tops + thick)
                if hit.any():
                    as_tiles(planes[i], side)[rows[hit] // side, :, cols[hit] // side, :] = -1
            top = p - p % THICK
            values = self._layer(top)
            if values is not None:
                part = self.leaves[top]
                t = part.side
                as_tiles(planes[i], t)[part.rows // t, :, part.cols // t, :] = values[:, p - top]
        for top in [t for t in self.layers if t + THICK <= first]:
            del self.layers[top]  # no later slab reads it
        return planes

    def _layer(self, top: int) -> np.ndarray | None:
        """The leaf values of the layer starting at plane ``top`` (``(boxes, THICK, t, t)``),
        evaluated once; None if it has no ambiguous box."""
        if top not in self.leaves:
            return None
        if top not in self.layers:
            depths = self.zs[top : top + THICK]
            self.layers[top] = _leaf_planes(self.leaves[top], self.xs, self.ys, depths, self.target)
        return self.layers[top]


def _leaf_planes(
    front: Frontier, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, target: Target
) -> np.ndarray:
    """Values of the leaf tiles of ``front`` at each depth of ``zs``: ``(tiles, depths,
    side, side)`` (a seam for tests to count what is evaluated)."""
    return leaf_pixels(front, xs, ys, zs, target, values=True)


def _merged(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All slabs' triangles over one vertex list: equal vertices (a shared plane's, or a
    box corner's caps) merged, triangles left with a repeated vertex dropped; and which
    vertices lie on a cap only (each part: vertices, faces, whether each vertex is a cap's)."""
    if not parts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, bool)
    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts[:-1]])
    vertices = np.concatenate([v for v, _, _ in parts]).astype(np.float64)
    faces = np.concatenate([f + o for (_, f, _), o in zip(parts, offsets, strict=True)])
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    capped = np.ones(len(unique), bool)
    np.logical_and.at(capped, inverse, np.concatenate([c for _, _, c in parts]))
    faces = inverse[faces]
    keep = (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    )
    return unique, faces[keep].astype(np.int64), capped


def volume(m: Mesh) -> float:
    """The volume a closed, consistently wound mesh encloses (divergence theorem)."""
    a, b, c = (m.vertices[m.faces[:, k]] for k in range(3))
    return float(np.sum(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6)
