"""Values and gradients at points: the one evaluator of ∇f that renderers share.

Input: a Program, points ``(x[i], y[i], z[i])`` and a :class:`~prospero_jax.renderers.view.
Target`.
Output: the value and the gradient ``(∂f/∂x, ∂f/∂y, ∂f/∂z)`` at each point, in the target's
dtype: what gradient images (:mod:`~prospero_jax.renderers.shade`), heightmap normals
(:mod:`~prospero_jax.renderers.heightmap`) and mesh vertices' Newton steps
(:mod:`~prospero_jax.renderers.mesh`) read.

How, two ways (:func:`field_gradients` picks one): :func:`gradients_at`, forward mode
through :func:`prospero_jax.to_function`'s custom derivatives (the op table's partials,
the dual step's rules: finite wherever the value is), three tangent directions at once,
points in chunks of :data:`CHUNK` (:data:`ACCELERATOR_CHUNK` on accelerators), the last
one padded to a power of two (at least a chunk's :data:`TAIL_SHARE`-th), so a few
compilations serve a program at any number of points; or
:func:`grouped_gradients`, nearby points in groups, each group's tape pruned over its box
and evaluated by the dual leaf kernel (the same rules, nothing compiled per program).
Values and derivatives are the program's as given (never a sign program).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from prospero_jax.evaluators.dual_kernel import unit_vectors
from prospero_jax.evaluators.lower import to_function
from prospero_jax.evaluators.tape import IMMEDIATE, Tapes, run_rows
from prospero_jax.ir.ops import CONST, INPUTS, OPCODE, OPS
from prospero_jax.ir.program import Program
from prospero_jax.renderers.hierarchy import (
    LEAF_SIDE,
    SPLIT,
    emitted,
    next_tapes,
    prune_level,
    root_tape,
    tile_duals,
)
from prospero_jax.renderers.view import Progress, Target
from prospero_jax.runtime.memory import aligned_empty

#: Points per call of the gradient kernel on CPU (the sphere's 1024² normals took 11.9 ms
#: in calls of 16,384, 10.0 in calls of 65,536; its 256³ mesh the same) and on
#: accelerators (where a call of 16,384 points cost what its kernel launches cost: the
#: bear's 417,000 normals at 1024² took 1.5 s on an H200; experiments/RESULTS.md).
CHUNK = 1 << 16
ACCELERATOR_CHUNK = 1 << 20
#: The last chunk holds the rest of the points padded to a power of two, at least this
#: share of a chunk: at most five shapes compile per program, and a few points past a
#: chunk no longer cost a whole one (the sphere's 512² normals, 73,816 points: 65,536 +
#: 16,384, not 2 × 65,536; experiments/RESULTS.md).
TAIL_SHARE = 16
#: Points of one cell evaluated on one pruned tape by :func:`grouped_gradients`.
GROUP = 256
#: Newton steps that move a mesh vertex onto the surface (:func:`onto_surface`).
NEWTON_STEPS = 3
#: The longest program :func:`grouped_gradients` should take: beyond it the dual leaf
#: kernel's register file (rows × 4 × :data:`GROUP` lanes) passes 32 MiB.
TILE_GRADIENT_ROWS = 8192
#: The programs :func:`field_gradients` evaluates on pruned tapes: below 64 rows the
#: compiled field costs less than pruning saves (tanglecube's 19 rows: a 128³ mesh's
#: projection 0.38 s against 0.52 s; experiments/RESULTS.md).
GROUPED_ROWS = range(64, TILE_GRADIENT_ROWS + 1)
#: The longest tape :func:`constant_gradients` looks at, and the bound it keeps a tape's
#: values and tangents under (float32's largest is ~3.4e38).
CONSTANT_ROWS = 16
FAR_BELOW_OVERFLOW = 1e30
_ALWAYS, _SCALED, _EQUAL = 1, 2, 3
_LINEAR_KIND = np.array([{"": 0, "always": 1, "scaled": 2, "equal": 3}[op.linear] for op in OPS])
_INPUT = np.isin(np.arange(len(OPS)), INPUTS)
MUL, DIV = OPCODE["mul"], OPCODE["div"]


@functools.lru_cache(maxsize=16)
def gradient_kernel(program: Program) -> Callable[..., Any]:
    """Jitted ``(x, y, z) → (value, gradient[3, ...])`` by forward mode, three directions."""
    field = to_function(program)

    @jax.jit
    def kernel(x: jax.Array, y: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        def along(direction: jax.Array) -> tuple[jax.Array, jax.Array]:
            tangents = tuple(jnp.full_like(x, d) for d in direction)
            return jax.jvp(field, (x, y, z), tangents)

        basis = jnp.eye(3, dtype=x.dtype)
        value, gradient = jax.vmap(along, out_axes=(None, 0))(basis)
        return value, gradient

    return kernel


def gradients_at(
    program: Program,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    where: Target,
    progress: Progress | None = None,
) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, "n 3"]]:
    """The value and gradient (∂f/∂x, ∂f/∂y, ∂f/∂z) at the points ``(x[i], y[i], z[i])``,
    by forward mode through the op table's partials, in chunks of :data:`CHUNK` points
    (:data:`ACCELERATOR_CHUNK` off CPU; a few compilations per program and platform);
    ``progress(done, total)`` counts chunks."""
    value = np.empty(len(x), where.dtype)
    gradient = np.empty((len(x), 3), where.dtype)
    with where.precision():
        for part, n, (v, g) in _chunked(gradient_kernel(program), (x, y, z), where, progress):
            value[part] = np.asarray(v)[:n]
            gradient[part] = np.asarray(g)[:, :n].T
    return value, gradient


def normals_at(
    program: Program,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    where: Target,
    turn: np.ndarray | None = None,
) -> Float[np.ndarray, "n 3"]:
    """The gradients :func:`gradients_at` gives at the points, turned by ``turn`` (a 3 × 3
    matrix, or None) and made unit length (:func:`unit_vectors`: NaN where the gradient is
    0 or not finite), in the target's dtype: ``(n, 3)``, a point's vector together (as
    images hold them): :func:`unit_chunks`' chunks."""
    normal = np.empty((len(x), 3), where.dtype)
    for part, unit in unit_chunks(program, x, y, z, where, turn):
        normal[part] = unit.T  # (XLA:CPU's transpose cost more)
    return normal


def unit_chunks(
    program: Program,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    where: Target,
    turn: np.ndarray | None = None,
) -> Iterator[tuple[slice, Float[np.ndarray, "3 m"]]]:
    """:func:`normals_at`'s vectors a chunk of points at a time, as they come from the
    device: per chunk its slice of the points and its unit vectors, ``(3, m)`` (a
    component a row; an image's pixels scattered a component at a time cost half the
    transpose and the scatter of whole vectors: the sphere's 512² normals, 0.58 → 0.29
    ms). A chunk's unit vectors are made on the device from its gradients
    (:func:`normal_kernel`), not in a pass of their own over all of them, padded
    (tanglecube's 1024² normals 19 → 14.5 ms)."""
    with where.precision():
        kernel, args = normal_kernel(program), () if turn is None else (turn.astype(where.dtype),)
        for part, n, unit in _chunked(kernel, (x, y, z), where, None, *args):
            yield part, np.asarray(unit)[:, :n]


@functools.lru_cache(maxsize=16)
def normal_kernel(program: Program) -> Callable[..., Any]:
    """``(x, y, z[, turn]) → unit normal[3, ...]``: :func:`gradient_kernel`'s gradient,
    then, on the device, turned and made unit length (:func:`unit_vectors`). Two compiled
    calls: fused into one loop, XLA recomputed the gradient for each use of it
    (tanglecube's 1024² normals 24 → 74 ms)."""
    gradient = gradient_kernel(program)

    def kernel(x: Any, y: Any, z: Any, turn: Any = None) -> Any:
        return _unit_kernel(gradient(x, y, z)[1], turn)

    return kernel


@jax.jit
def _unit_kernel(vectors: jax.Array, turn: jax.Array | None) -> jax.Array:
    """:func:`unit_vectors` of every vector of ``vectors``."""
    return unit_vectors(vectors, jnp.bool_(True), turn)


def _chunked(
    kernel: Callable[..., Any],
    points: tuple[np.ndarray, np.ndarray, np.ndarray],
    where: Target,
    progress: Progress | None = None,
    *args: Any,
) -> Iterator[tuple[slice, int, Any]]:
    """``kernel(x, y, z, *args)`` over the points in chunks of :data:`CHUNK` points
    (:data:`ACCELERATOR_CHUNK` off CPU), the last one padded to a power of two, at least
    a :data:`TAIL_SHARE`-th of a chunk, so a few compilations serve any number of
    points: per chunk its slice of the points, how many are real and the kernel's
    outputs (on the target's device); ``progress(done, total)`` counts chunks."""
    size = CHUNK if where.platform == "cpu" else ACCELERATOR_CHUNK
    px, py, pz = (_as_dtype(v, where.dtype) for v in points)
    whole, rest = divmod(len(px), size)
    last = max(size // TAIL_SHARE, 1 << (rest - 1).bit_length()) if rest else 0
    sizes = [size] * whole + ([last] if rest else [])
    # Padded once (a call per chunk cost more than the chunk's work on small programs);
    # on the default device the kernel takes host arrays (JAX's C++ path moves them).
    padded = [aligned_empty(sum(sizes), v.dtype) for v in (px, py, pz)]  # runtime.memory
    for out, v in zip(padded, (px, py, pz), strict=True):
        out[: len(v)] = v
        out[len(v) :] = v[-1:]  # the last point repeated (none if there are no points)
    place = where.device != jax.local_devices()[0]
    chunks = len(sizes)
    for i, n in enumerate(sizes):
        part = slice(i * size, i * size + n)
        xyz = tuple(v[part] for v in padded)
        if place:
            xyz = jax.device_put(xyz, where.device)
        yield part, len(px[part]), kernel(*xyz, *args)
        if progress is not None:
            progress(i + 1, chunks)


def _as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` in ``dtype``, rounded once from float64 (no copy if already there)."""
    values = np.asarray(values)
    return values if values.dtype == dtype else values.astype(np.float64).astype(dtype)


def prunes_gradients(program: Program, where: Target) -> bool:
    """Whether gradients of ``program`` on ``where`` are computed on pruned tapes
    (:func:`group_gradients`): on CPU, for programs of :data:`GROUPED_ROWS` rows."""
    return where.platform == "cpu" and len(program) in GROUPED_ROWS


def field_gradients(
    program: Program,
    points: Float[np.ndarray, "n 3"],
    cells: np.ndarray,
    where: Target,
) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, "n 3"]]:
    """The value and gradient at ``points`` (rows ``(x, y, z)``; ``cells`` as
    :func:`grouped_gradients` takes them), by the one rule renderers share: on pruned
    tapes (:func:`grouped_gradients`) on CPU for programs of :data:`GROUPED_ROWS` rows,
    else all points at once through the compiled field (:func:`gradients_at`:
    accelerators, very short or very long programs)."""
    if prunes_gradients(program, where):
        return grouped_gradients(program, points, cells, where)
    return gradients_at(program, points[:, 0], points[:, 1], points[:, 2], where)


def grouped_gradients(
    program: Program,
    points: Float[np.ndarray, "n 3"],
    cells: np.ndarray,
    where: Target,
) -> tuple[Float[np.ndarray, " n"], Float[np.ndarray, "n 3"]]:
    """The value and gradient at ``points`` (rows ``(x, y, z)``): what
    :func:`gradients_at` gives there, computed on pruned tapes instead of the whole
    program, so nothing is compiled per program. ``cells`` (an integer per point) says
    which points lie near each other: a pixel tile, a column of mesh cells.

    How: the points of each cell are sorted by z and cut into groups of up to
    :data:`GROUP` (a floor, a roof and a wall in one tile fall in different groups),
    whose gradients :func:`group_gradients` computes on pruned tapes.
    """
    dtype = where.dtype
    if not len(points):
        return np.empty(0, dtype), np.empty((0, 3), dtype)
    coords = np.ascontiguousarray(np.asarray(points, np.float64).T, dtype)  # (3, k), rows whole
    order = _by_cell_then_z(np.asarray(cells), coords[2])
    cell_sorted = np.asarray(cells)[order]
    first = np.flatnonzero(np.r_[True, cell_sorted[1:] != cell_sorted[:-1]])
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    opens = rank % GROUP == 0  # a group starts every GROUP points of a cell
    groups, n = int(opens.sum()), GROUP
    # Each point's place in the groups' slots, flat (group * n + slot): increasing in the
    # sorted order, so the points move in by one gather (after each slot's point index is
    # scattered) and out by another.
    place = np.empty(len(order), np.int64)
    place[order] = (np.cumsum(opens) - 1) * n + rank % GROUP
    slots = np.repeat(order[opens], n)  # each slot's point: unused ones, the group's first
    slots[place] = np.arange(len(order))
    # Gathered (np.take), not scattered: ~2× quicker on a million points.
    grouped = np.take(coords, slots, axis=1).reshape(3, groups, n).transpose(1, 0, 2).copy()
    out = group_gradients(program, grouped, where)  # (groups, 4, n)
    rows = np.take(out.transpose(0, 2, 1).reshape(groups * n, 4), place, axis=0)
    return rows[:, 0], rows[:, 1:]


def group_gradients(
    program: Program,
    grouped: Float[np.ndarray, "groups 3 n"],
    where: Target,
) -> Float[np.ndarray, "groups 4 n"]:
    """The value and gradient at each group's points ``grouped[g] = [x, y, z] × n`` (in
    the target's dtype): ``(groups, 4, n)``, the value then ∂f/∂x, ∂f/∂y, ∂f/∂z, what
    :func:`gradients_at` gives there. Each group's tape is the program's pruned over the
    hull of its points (so a group should hold points near each other; a group may repeat
    a point to fill its ``n``) by the culling kernel: only choices its intervals decide,
    so the tape's value and partials are the program's at every point of the box (the
    root's need is its value, never its sign alone). In two levels: the whole tape over
    the hull of 16 consecutive groups' boxes, then that tape over each of them; the dual
    leaf kernel evaluates the pruned tapes."""
    tapes, lengths = group_tapes(program, hulls_of(grouped), where)
    with where.precision():  # float64 targets' kernels trace in float64
        return tile_duals(tapes, lengths, grouped, where)


def hulls_of(grouped: Float[np.ndarray, "groups 3 n"]) -> Float[np.ndarray, "groups 6"]:
    """Each group's points' hull, ``[xlo, xhi, ylo, yhi, zlo, zhi]`` (in their dtype)."""
    return np.stack([grouped.min(axis=2), grouped.max(axis=2)], axis=2).reshape(-1, 6)


def group_tapes(
    program: Program, hulls: Float[np.ndarray, "groups 6"], where: Target
) -> tuple[Tapes, np.ndarray]:
    """Each group's tape for :func:`group_gradients` (concatenated, in group order) and
    their lengths, from each group's points' hull (:func:`hulls_of`; a heightmap's tiles
    know theirs from the axes: three reductions over every point cost 2.3 ms of
    colonnade's 1024² normals)."""
    groups = len(hulls)
    dtype = where.dtype
    with where.precision():
        whole = root_tape(program, dtype)
        # The root wrapped in ``add root NaN``: its interval is NaN, so every box stays
        # ambiguous and passes the root the need of its value (no sign-only choice, and a
        # tape even where the box is inside); the wrapper is cut off after pruning.
        wrapped = Tapes(
            np.append(whole.ops, OPCODE["add"]).astype(np.int32),
            np.concatenate([whole.args, [[len(whole) - 1, IMMEDIATE]]]).astype(np.int32),
            np.append(whole.consts, np.nan).astype(whole.consts.dtype),
            whole.params,
        )
        lanes = SPLIT[0] ** 2  # the root level's kernel, as a frame compiles it
        # Two levels: the whole tape over the hulls of ``lanes`` groups, then each hull's
        # tape over its groups (colonnade's 1024² normals: 0.2 M rows pruned, not 2.7 M).
        middles = -(-groups // lanes)
        boxes = np.repeat(hulls[-1:], middles * lanes, axis=0)  # padded with the last group
        boxes[:groups] = hulls
        boxes = boxes.reshape(middles, lanes, 6)
        hull = np.concatenate(
            [boxes[:, :, 0::2].min(axis=1), boxes[:, :, 1::2].max(axis=1)], axis=1
        )[:, [0, 3, 1, 4, 2, 5]]  # (middles, [xlo, xhi, ylo, yhi, zlo, zhi])
        tops = -(-middles // lanes)
        outer = np.repeat(hull[-1:], tops * lanes, axis=0)
        outer[:middles] = hull
        length = len(wrapped)
        repeated = wrapped.take(np.tile(np.arange(length), tops))
        middle, sizes = _pruned_over(
            repeated, np.full(tops, length), outer.reshape(tops, lanes, 6), length, where
        )
        sizes = sizes[:middles]  # all > 0: the wrapper leaves every box ambiguous
        middle = middle.take(np.arange(sizes.sum()))
        pruned, kept = _pruned_over(middle, sizes, boxes, length, where)
        kept = kept[:groups]
        own = kept > 0
        lengths = np.where(own, kept - 1, len(whole))  # without the wrapper
        starts = np.concatenate([[0], np.cumsum(kept)[:-1]])
        pairs = zip(pruned[:3], whole[:3], strict=True)
        ops, args, consts = (np.concatenate([p, w]) for p, w in pairs)
        source = Tapes(ops, args, consts, whole.params)
        begin = np.where(own, starts, len(pruned))  # the whole tape follows ``pruned``
        return source.take(run_rows(begin, lengths)), lengths


def constant_gradients(tapes: Tapes, lengths: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Per tape (``lengths`` rows each, in order), whether its dual evaluation gives the
    same gradient at every point within ``reach`` of the origin (per tape, the largest
    ``|x|``, ``|y|``, ``|z|``): a tape of at most :data:`CONSTANT_ROWS` rows of inputs,
    constants and rows whose partials are constants (the op table's ``linear``), whose
    values and tangents, bounded row by row, stay below :data:`FAR_BELOW_OVERFLOW` (so no
    row's value or partial is infinite or NaN anywhere, and the dual rule selects the same
    terms at every point: the same gradient, up to the sign of a zero component, ``a · 0``
    of an immediate's side). A plane's tape, ``10·z − 3.1``: the colonnade's floors."""
    out = np.zeros(len(lengths), bool)
    short = np.flatnonzero((lengths > 0) & (lengths <= CONSTANT_ROWS))
    # By their ops first (a row of another kind rules its tape out), then by bounds, row
    # by row, over the tapes left (colonnade 1024²: 2.2 → 0.6 ms).
    short = short[_LinearRows.of(tapes, lengths, short).linear.all(axis=1)]
    if not len(short):
        return out
    rows = _LinearRows.of(tapes, lengths, short)
    live, code, kind, a, b, scaled = rows.live, rows.code, rows.kind, rows.a, rows.b, rows.scaled
    width = live.shape[1]
    number = np.abs(tapes.consts[rows.at].astype(np.float64))  # an immediate's size (NaN: not)
    value = np.zeros((len(short), width))  # bounds on each row's |value| and |tangent|
    slope = np.zeros((len(short), width))
    fine = np.ones(len(short), bool)
    tape = np.arange(len(short))
    with np.errstate(all="ignore"):
        for i in range(width):  # every live row is of an allowed kind (above)
            ra, rb, c, op, k = a[:, i], b[:, i], number[:, i], code[:, i], kind[:, i]
            at_a, at_b = np.maximum(ra, 0), np.maximum(rb, 0)  # an immediate's: unread
            va, vb = (
                np.where(r == IMMEDIATE, c, value[tape, j]) for r, j in ((ra, at_a), (rb, at_b))
            )
            ta, tb = (
                np.where(r == IMMEDIATE, 0.0, slope[tape, j]) for r, j in ((ra, at_a), (rb, at_b))
            )
            quotient = scaled[:, i] & (op == DIV)
            v = np.select(
                [_INPUT[op], op == CONST, quotient, scaled[:, i], k == _EQUAL],
                [reach[short], c, va / vb, va * vb, va],
                va + vb,
            )
            t = np.select(
                [_INPUT[op], op == CONST, quotient, scaled[:, i], k == _EQUAL],
                [1.0, 0.0, ta / vb, ta * vb + tb * va, ta],
                ta + tb,
            )
            bound = np.maximum(v, t)
            bound = np.where(quotient, np.maximum(bound, np.maximum(1 / vb, va / vb**2)), bound)
            fine &= ~live[:, i] | (bound < FAR_BELOW_OVERFLOW)
            value[:, i], slope[:, i] = v, t
    out[short] = fine
    return out


class _LinearRows(NamedTuple):
    """Tapes' rows side by side, ``(tapes, rows)`` (padded with row 0, not ``live``), for
    :func:`constant_gradients`: where they are, their ops and ``linear`` kinds, operands,
    whether a row is scaled by an immediate, and whether its partials are constants
    (or it is padding)."""

    live: np.ndarray
    at: np.ndarray
    code: np.ndarray
    kind: np.ndarray
    a: np.ndarray
    b: np.ndarray
    scaled: np.ndarray
    linear: np.ndarray

    @classmethod
    def of(cls, tapes: Tapes, lengths: np.ndarray, which: np.ndarray) -> _LinearRows:
        """The rows of tapes ``which`` (of ``tapes``, ``lengths`` rows each, in order)."""
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[which]
        width = int(lengths[which].max(initial=0))
        live = np.arange(width) < lengths[which, None]
        at = np.where(live, starts[:, None] + np.arange(width), 0)
        code, args = tapes.ops[at], tapes.args[at]
        kind, a, b = _LINEAR_KIND[code], args[..., 0], args[..., 1]
        scaled = (kind == _SCALED) & ((b == IMMEDIATE) | ((a == IMMEDIATE) & (code == MUL)))
        linear = _INPUT[code] | (code == CONST) | (kind == _ALWAYS) | scaled | ~live
        linear |= (kind == _EQUAL) & (a == b) & (a != IMMEDIATE)
        return cls(live, at, code, kind, a, b, scaled, linear)


def _pruned_over(
    tapes: Tapes, lengths: np.ndarray, boxes: np.ndarray, root: int, where: Target
) -> tuple[Tapes, np.ndarray]:
    """Parent ``p``'s tape (the ``p``-th run of ``lengths[p]`` rows of ``tapes``) pruned
    over each of its boxes ``boxes[p]`` (``(parents, lanes, [xlo, xhi, ylo, yhi, zlo,
    zhi])``) by the culling kernel: the children's tapes, concatenated in the order
    ``p * lanes + lane``, and their lengths (0 for a child the intervals decide);
    ``root``: the rows of the tape the parents were pruned from (the kernel's registers)."""
    parents, lanes = boxes.shape[:2]
    level = prune_level(tapes, lengths, boxes.transpose(0, 2, 1), where.device, root)
    row, at = emitted(level, lanes)
    pruned = next_tapes(tapes, row, level, at)  # lane-major: (lane, parent)
    kept = level.kept.T.ravel()
    starts = np.concatenate([[0], np.cumsum(kept)[:-1]])
    child = np.arange(parents * lanes)
    order = (child % lanes) * parents + child // lanes  # parent-major child → lane-major
    sizes = kept[order]
    return pruned.take(run_rows(starts[order], sizes)), sizes.astype(np.int64)


def _by_cell_then_z(cells: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The points' order by cell, then by z (as float32) within a cell, ties in their
    first order (but -0 before +0): ``np.lexsort((z, cells))``, as one stable sort of an
    integer key (the cell above z's bits, made to order as the numbers do): 2-5× quicker
    on a million points (experiments/RESULTS.md)."""
    bits = z.astype(np.float32).view(np.int32).astype(np.int64)
    bits = np.where(bits < 0, ~bits & 0x7FFFFFFF, bits | 0x80000000)  # -x < +x, as floats
    cells = cells.astype(np.int64) - cells.min()
    if cells.max() >= 1 << 31:  # a sparse key: its rank among the cells instead
        cells = np.unique(cells, return_inverse=True)[1].reshape(-1)
    return np.argsort((cells << 32) | bits, kind="stable")


def surface_distance(
    program: Program, points: Float[np.ndarray, "n 3"], steps: np.ndarray, target: Target
) -> Float[np.ndarray, " n"]:
    """The distance estimate ``|f| / |∇f|`` at ``points`` (0 where f is 0, inf where the
    gradient is 0 and f is not); ``steps``: a grid cell's sides, to group nearby points."""
    if not len(points):
        return np.zeros(0)
    value, gradient = field_gradients(program, points, _columns(points, steps), target)
    value, gradient = value.astype(np.float64), gradient.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.where(value == 0, 0.0, np.abs(value) / np.linalg.norm(gradient, axis=1))
    return np.nan_to_num(distance, nan=np.inf)


def onto_surface(
    program: Program,
    vertices: Float[np.ndarray, "n 3"],
    steps: np.ndarray,
    target: Target,
    lo: np.ndarray | float = -np.inf,
    hi: np.ndarray | float = np.inf,
    near: float = 0.0,
    newton_steps: int = NEWTON_STEPS,
) -> tuple[Float[np.ndarray, "n 3"], Float[np.ndarray, " n"]]:
    """``vertices`` moved towards the surface by up to ``newton_steps`` Newton steps ``p ←
    p − f ∇f / |∇f|²`` (:func:`field_gradients`), each at most half a cell long (the cell's
    shortest side: ``steps`` are its sides in x, y, z) and kept in ``[lo, hi]``; a point
    stops once within ``near`` of the surface (``|f| / |∇f|``; a zero gradient never is).
    Also the distance estimate where the points still moving end (0 for the others)."""
    points = np.array(vertices, np.float64)
    lo_all, hi_all = np.broadcast_to(lo, points.shape), np.broadcast_to(hi, points.shape)
    cells = _columns(points, steps)
    step = float(np.min(steps))
    live = np.arange(len(points))  # points still moving
    distance = np.zeros(len(points))
    for index in range(newton_steps):
        first = index == 0
        here = points if first else points[live]  # every point moves in the first step
        value, gradient = field_gradients(program, here, cells if first else cells[live], target)
        value, gradient = value.astype(np.float64), gradient.astype(np.float64)
        norm2 = np.einsum("ij,ij->i", gradient, gradient)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(norm2 > 0, -value / norm2, 0)  # the Newton step, along ∇f
            far = np.where(value == 0, 0.0, np.abs(value) / np.sqrt(norm2))
            length = np.abs(scale) * np.sqrt(norm2)
            scale = np.where(length > step / 2, scale * (step / 2) / length, scale)
        moved = here + np.nan_to_num(scale[:, None] * gradient)
        low, high = (lo_all, hi_all) if first else (lo_all[live], hi_all[live])
        points[live] = np.minimum(np.maximum(moved, low), high)
        live = live[~(far <= near)]  # NaN and inf stay
        if not len(live):
            break
    # Points that settled are on the surface; those still moving may be stuck at a wall.
    distance[live] = surface_distance(program, points[live], steps, target)
    return points, distance


def _columns(points: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """A key per point: the column of leaf tiles of cells it lies in (points in one key
    are near each other, for :func:`grouped_gradients`)."""
    columns = np.floor(points[:, :2] / (LEAF_SIDE * np.asarray(steps)[:2])).astype(np.int64)
    key: np.ndarray = columns[:, 0] * (1 << 20) + columns[:, 1]
    return key
