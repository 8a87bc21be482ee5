"""The solids' compiled tier: a program's own compiled closures where they beat the kernels.

Input: a heightmap's walked program (its sign program by default), the program the
closures evaluate (``points``: its source, whose sign is the walked one's), leaf boxes
(:class:`~prospero_jax.renderers.hierarchy.Frontier`) and a
:class:`~prospero_jax.renderers.view.Target`.
Output: whether a part's leaves go to the compiled closure (:func:`compiles`) and each
leaf column's first inside depth by it (:func:`firsts`); for a program whose tapes
nothing can prune (:func:`never_prune`), a level's bounds by its compiled interval
closure (:func:`bounds_of`), which :func:`~prospero_jax.renderers.octree.walk` takes in
place of the prune kernels.

How: ski rental, as :func:`~prospero_jax.renderers.hierarchy.tier` rents the host tier:
the octree pays (:func:`pay`) what interpreting leaves costs, and once that is what
compiling is estimated to cost (:func:`price`) the closures are bought (:func:`bought`;
at once on the ``"compiled"`` tier: the viewer's).

Invariants: the closures take the program's numbers as an argument
(:func:`~prospero_jax.evaluators.lower.to_shaped`,
:func:`~prospero_jax.evaluators.interval.to_shaped_intervals`), so they compile per
program shape (every turned view of a solid shares one), never per box, tape or view;
what they decide is the program's (values < 0 at the points; intervals that hold every
point's value), as the kernels decide it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prospero_jax.evaluators.interval import ShapedIntervals, to_shaped_intervals
from prospero_jax.evaluators.leaf_kernels import NOT_FOUND
from prospero_jax.evaluators.lower import Shaped, constant_array, to_shaped
from prospero_jax.evaluators.tape import Tapes
from prospero_jax.ir.ops import OPS
from prospero_jax.ir.program import Program
from prospero_jax.renderers.column_search import first_true, sample_indices
from prospero_jax.renderers.hierarchy import Frontier, root_tape
from prospero_jax.renderers.view import Target
from prospero_jax.runtime.memory import aligned_empty

#: The compiled leaf tier: leaf boxes whose tapes keep (with :data:`FIXED_ROWS` added)
#: more than ``1 / COMPILED_GAIN`` of the rows of the program the closure evaluates (of
#: ``COMPILED_ROWS`` rows: a heightmap's source program, not its sign program) are
#: evaluated at their points by its jitted closure (:func:`prospero_jax.to_function`:
#: ~0.05–0.09 ns a point and row, against the leaf kernel's ~0.33 on pruned tapes), once
#: :func:`bought`. The points are built inside the closure (:func:`_firsts_kernel`), so
#: short programs pay too (tanglecube's 20 rows, which nothing prunes: 1024³ 0.20 → 0.13
#: s; experiments/RESULTS.md).
COMPILED_ROWS = range(1, 2049)
COMPILED_GAIN = 4
#: The leaf kernel's cost a voxel before any row, in rows (~0.45 ns a voxel, ~0.1 a row:
#: experiments/RESULTS.md): a closure of up to ``COMPILED_GAIN × (rows + FIXED_ROWS)``
#: rows beats tapes of ``rows`` rows (the sphere's one-row tapes against its 11-row
#: closure).
FIXED_ROWS = 4
#: What compiling the closure is estimated to cost, :func:`price`: ``COMPILE_SECONDS +
#: COMPILE_SECONDS_PER_ROW`` a row (measured, compilation cache off: tanglecube's 20 rows
#: 0.04 s, the bear's 657 0.31 s, the colonnade's 808 0.25 s).
COMPILE_SECONDS = 0.03
COMPILE_SECONDS_PER_ROW = 4.5e-4
#: A call of the compiled closure takes as many leaf boxes (or columns) as hold about
#: this many point-rows (a power of two, :data:`COLUMNS` columns at most,
#: :data:`LEAST_COLUMNS` (32 boxes) at least; the last call padded): a long program's
#: intermediate arrays then stay in cache (a bear 512³ heightmap took 0.25 s in calls of
#: 32 boxes, 0.28 of 64, 0.30 of 128; bear 1024³ in calls of 512 to 8,192 columns: 0.86,
#: 0.84, 0.85, 0.88, 0.93 s) and a short one's calls cost less than their dispatch
#: (tanglecube 1024³: 113 ms in calls of 32 boxes, 100 of 256, 102 of 1,024).
CALL_POINT_ROWS = 1 << 23
COLUMNS = 1 << 16
LEAST_COLUMNS = 2048
#: Programs of up to this many rows have their leaf boxes' depths reduced inside the
#: compiled closure (:func:`_firsts_kernel`).
REDUCED_ROWS = 512
#: Boxes a call of the compiled interval closure takes (:func:`bounds_of`).
BOUNDED_BOXES = 1 << 14
#: Compiled closures kept per cache (the oldest dropped beyond it).
KEPT = 16
_rent: dict[str, float] = {}  # seconds of interpreted leaves, per shape
_bounds_kernels: dict[str, Callable[..., Any]] = {}  # compiled, per shape
_firsts_kernels: dict[str, Callable[..., jax.Array]] = {}  # compiled, per shape
#: ``bounds(boxes)``: lower and upper bounds of the value over boxes ``(parents, [xlo, xhi,
#: ylo, yhi, zlo, zhi], lanes)``, each ``(parents, lanes)`` (NaN: unknown).
Bounds = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def never_prune(tapes: Tapes) -> bool:
    """Whether no row of ``tapes`` can be chosen away (no op with an interval or a sign
    choice rule: tanglecube's sum of powers, a sphere): then every box's pruned tape is
    the tape itself, and pruning is work for nothing."""
    return not any(OPS[code].choose or OPS[code].sign_choose for code in np.unique(tapes.ops))


def bounds_of(program: Program, points: Program, target: Target) -> Bounds | None:
    """The compiled interval closure of ``points`` (:func:`~prospero_jax.evaluators.
    interval.to_shaped_intervals`, compiled per shape), as :func:`~prospero_jax.renderers.
    octree.walk`'s ``bounds``, or None: for a ``program`` whose tapes :func:`never_prune`,
    once :func:`bought`. The kernels' interval pass runs a row's rule per box at ~11 ns a
    lane (tanglecube's atoms); the closure, all boxes at once (:data:`BOUNDED_BOXES` a
    call)."""
    if not _eligible(points, target) or not bought(points, target):
        return None
    if not never_prune(root_tape(program, target.dtype)):
        return None
    intervals = _shaped_intervals(points)
    kernel = _kept(_bounds_kernels, intervals.key, lambda: jax.jit(intervals.bounds))
    numbers = tuple(constant_array(v, target.dtype) for v in intervals.numbers)

    def bounds(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parents, _, lanes = boxes.shape
        count = parents * lanes
        calls = -(-count // BOUNDED_BOXES)
        flat = aligned_empty((6, calls * BOUNDED_BOXES), boxes.dtype)
        flat[:, :count] = boxes.transpose(1, 0, 2).reshape(6, count)  # box p·lanes + k
        flat[:, count:] = flat[:, count - 1 : count]  # padded with the last box
        outs = [
            kernel(numbers, flat[:, k * BOUNDED_BOXES : (k + 1) * BOUNDED_BOXES])
            for k in range(calls)
        ]
        lo, hi = (np.concatenate([np.asarray(out[i]) for out in outs]) for i in (0, 1))
        return lo[:count].reshape(parents, lanes), hi[:count].reshape(parents, lanes)

    return bounds


@functools.lru_cache(maxsize=16)
def _shaped_intervals(program: Program) -> ShapedIntervals:
    """``program``'s interval code apart from its numbers (cached per program)."""
    return to_shaped_intervals(program)


def compiles(part: Frontier, target: Target, points: Program) -> bool:
    """Whether ``part``'s leaves go to ``points``' compiled closure (:func:`firsts`)
    rather than the leaf kernel on their tapes."""
    if not _eligible(points, target):
        return False
    if (part.lengths.mean() + FIXED_ROWS) * COMPILED_GAIN < len(points):
        return False  # pruned tapes are short enough: the kernel interprets less
    return bought(points, target)


def merges(points: Program) -> bool:
    """Whether layers of compiled leaf boxes are joined into calls (octree.walk's
    ``merge_bare``): for a short program (:data:`REDUCED_ROWS`), whose boxes cost a call
    more than their work (the sphere's 1024³, ~60 layers of ~150 boxes: 9.2 → 5.2 ms),
    not for a long one (whose calls hold 32 boxes anyway, and boxes behind a surface
    found in the same call are work lost)."""
    return len(points) <= REDUCED_ROWS


def pay(points: Program, seconds: float) -> None:
    """Count ``seconds`` of leaves interpreted where ``points``' closure could serve."""
    if len(points) in COMPILED_ROWS:  # what it may buy: rent is kept per shape
        key = shaped(points).key
        _rent[key] = _rent.get(key, 0.0) + seconds


def bought(points: Program, target: Target) -> bool:
    """Whether ``points``' closures are bought: at once on the ``"compiled"`` tier, else
    once interpreting its leaves has cost what compiling is estimated to (:func:`price`)."""
    return target.tier == "compiled" or _rent.get(shaped(points).key, 0.0) >= price(points)


def price(points: Program) -> float:
    """The seconds compiling ``points``' closure is estimated to cost."""
    return COMPILE_SECONDS + COMPILE_SECONDS_PER_ROW * len(points)


def _eligible(points: Program, target: Target) -> bool:
    """Whether ``points`` may have closures for ``target``: one CPU device (elsewhere the
    kernels serve), :data:`COMPILED_ROWS` rows."""
    return target.platform == "cpu" and len(target.devices) < 2 and len(points) in COMPILED_ROWS


def _kept(cache: dict[str, Any], key: str, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make`` if missing (the oldest dropped beyond :data:`KEPT`)."""
    if key not in cache:
        while len(cache) >= KEPT:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


@functools.lru_cache(maxsize=16)
def shaped(program: Program) -> Shaped:
    """``program``'s code apart from its numbers (cached per program: a plan and a digest)."""
    return to_shaped(program)


def _firsts_kernel(program: Program) -> Callable[..., jax.Array]:
    """The jitted closure that finds leaf columns' first inside depths for programs of
    ``program``'s shape (the points built inside it from their coordinates, so a call
    reads a column's ``x``, ``y`` and depths, not its samples' points). For a program of
    up to :data:`REDUCED_ROWS` rows, ``(numbers, x[b, s], y[b, s], z[b, d], offsets[b]) →
    index[b, s, s]``: every column ``(y, x)`` of each box ``b``, the first depth index
    where the value is < 0 plus the box's offset (its first sample), or
    :data:`~prospero_jax.evaluators.leaf_kernels.NOT_FOUND` where none is (a heightmap's
    sample index, as the leaf kernel gives it), reduced in the loop (a call then writes a
    column's index, not its signs: tanglecube, 262,144 points, 0.12 against 0.27 ms). For
    a longer one, ``(numbers, x[c], y[c], z[c, d]) → inside[c, d]`` (value < 0) over a
    list of columns ``c``, reduced on the host (in the loop, the bear's took 8.2 against
    5.1 ms). Compiled once per shape (the last 16)."""
    field = shaped(program).field

    def boxes(
        numbers: Any, x: jax.Array, y: jax.Array, z: jax.Array, offsets: jax.Array
    ) -> jax.Array:
        shape = (len(x), z.shape[1], x.shape[1], x.shape[1])
        at = (x[:, None, None, :], y[:, None, :, None], z[:, :, None, None])
        flat = (jnp.broadcast_to(v, shape).reshape(-1) for v in at)
        inside = (field(numbers, *flat) < 0).reshape(shape)  # NaN: not inside
        index = jax.lax.broadcasted_iota(np.int32, shape, 1) + offsets[:, None, None, None]
        return jnp.min(jnp.where(inside, index, np.int32(NOT_FOUND)), axis=1)

    def columns(numbers: Any, x: jax.Array, y: jax.Array, z: jax.Array) -> jax.Array:
        flat = (jnp.broadcast_to(v, z.shape).reshape(-1) for v in (x[:, None], y[:, None], z))
        return (field(numbers, *flat) < 0).reshape(z.shape)  # NaN: not inside

    kernel = boxes if len(program) <= REDUCED_ROWS else columns
    jitted: Callable[..., jax.Array] = _kept(
        _firsts_kernels, shaped(program).key, lambda: jax.jit(kernel)
    )
    return jitted


def firsts(
    program: Program,
    part: Frontier,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    offsets: np.ndarray,
    known: np.ndarray,
) -> np.ndarray:
    """Per box of ``part`` and column, the first of the depths ``zs`` (a row a box) where
    the value is < 0 as a sample index: plus the box's ``offsets`` entry (int32), or
    :data:`~prospero_jax.evaluators.leaf_kernels.NOT_FOUND` where none is (as
    :func:`~prospero_jax.renderers.column_search.sample_indices` makes them):
    ``(boxes, side, side)`` int32, by the program's compiled closure
    (:func:`_firsts_kernel`, :func:`_called`). A short program's boxes are evaluated
    whole (:data:`REDUCED_ROWS`). A long one's open columns only, those whose ``known``
    first sample (``(boxes, side, side)``) is below the box's first; a closed column
    gets ``NOT_FOUND`` (it has nothing to lower). A sixth of the bear's compiled leaf
    samples at 1024³ lie in columns found above, and XLA runs a column's 16 samples at
    ~50 ns each against a box's ~77 (bear 1024³ with normals, one core: 1.33 → 1.02 s a
    frame; the sphere's boxes picked by column took 32 → 92 ms at 1024³, where picking costs
    more than evaluating; experiments/RESULTS.md, "Twenty-seventh session")."""
    depth, boxes = zs.shape[-1], len(part.lengths)
    if len(program) <= REDUCED_ROWS:
        pixel = np.arange(part.side)
        x, y = xs[part.cols[:, None] + pixel], ys[part.rows[:, None] + pixel]
        args = (x, y, zs, offsets.astype(np.int32))
        per_call = _per_call(program, depth, part.side**2)
        padded = tuple(_padded(a, -(-boxes // per_call) * per_call) for a in args)
        return _called(program, padded, boxes, per_call)
    found = np.full((boxes, part.side, part.side), NOT_FOUND, np.int32)
    box, row, col = np.nonzero(known > offsets[:, None, None])
    if len(box):
        per_call = _per_call(program, depth, 1)
        count = -(-len(box) // per_call) * per_call  # the last call padded
        x = _gathered(xs, part.cols[box] + col, count)
        y = _gathered(ys, part.rows[box] + row, count)
        z = _gathered(zs, box, count)
        first = _called(program, (x, y, z), len(box), per_call, first_true)
        found[box, row, col] = sample_indices(first, depth, offsets[box])
    return found


def _per_call(program: Program, depth: int, unit: int) -> int:
    """How many boxes (or columns) of ``unit`` columns and ``depth`` samples a call of
    ``program``'s closure takes: a power of two holding about :data:`CALL_POINT_ROWS`
    point-rows, :data:`LEAST_COLUMNS` columns at least, :data:`COLUMNS` at most."""
    fit = CALL_POINT_ROWS // (len(program) * depth)
    return min(COLUMNS, 1 << max(LEAST_COLUMNS, fit).bit_length() - 1) // unit


def _called(
    program: Program,
    args: tuple[np.ndarray, ...],
    count: int,
    per_call: int,
    reduce: Callable[[np.ndarray], np.ndarray] = np.asarray,
) -> np.ndarray:
    """``program``'s compiled closure (:func:`_firsts_kernel`) on ``args`` (a box or a
    column a row, a multiple of ``per_call`` rows: the last call's padding included), in
    calls of ``per_call`` rows; each call's output ``reduce``-d, concatenated, its first
    ``count`` rows. A call is dispatched before the last one's output is read and
    reduced, so that on a second core the host's work overlaps the closure's."""
    kernel = _firsts_kernel(program)
    numbers = tuple(constant_array(v, args[0].dtype) for v in shaped(program).numbers)
    outs, pending = [], None
    for start in range(0, len(args[0]), per_call):
        out = kernel(numbers, *(a[start : start + per_call] for a in args))  # dispatched
        if pending is not None:
            outs.append(reduce(np.asarray(pending)))
        pending = out
    outs.append(reduce(np.asarray(pending)))
    return np.concatenate(outs)[:count]


def _gathered(source: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """``source[index]`` (rows of ``source``) in an aligned array of ``count`` rows, the
    last row repeated into the rest (a call's padding), gathered in one pass."""
    out = aligned_empty((count, *source.shape[1:]), source.dtype)  # see runtime.memory
    np.take(source, index, axis=0, out=out[: len(index)])
    out[len(index) :] = out[len(index) - 1]
    return out


def _padded(rows: np.ndarray, count: int) -> np.ndarray:
    """``rows`` with its last row repeated to ``count`` rows (not ``np.pad``: its
    overhead, ~50 µs a call, was a third of the sphere's compiled leaves)."""
    out = aligned_empty((count, *rows.shape[1:]), rows.dtype)  # see runtime.memory
    out[: len(rows)] = rows
    out[len(rows) :] = rows[-1]
    return out
