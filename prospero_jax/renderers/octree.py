"""The interval hierarchy over boxes in x, y and z: heightmaps' first surfaces, meshes'
grids, and 2-D images as its z-fixed case.

Input: a Program of (x, y, z); the pixel-centre axes of a power-of-two square (``xs``,
``ys``: columns left to right, rows top to bottom) and the depth samples ``zs`` (a
power-of-two count, at least :data:`THICK` for a solid, padded with the last; one for a
2-D image, whose leaf boxes are one sample thick); a
:class:`~prospero_jax.renderers.view.Target`.
Output: :func:`walk` passes every box proved inside to a callback and every leaf box left
ambiguous (with its pruned tape) to another, a layer of samples at a time in the order of
``zs`` (the mesher's grid, :mod:`~prospero_jax.renderers.mesh`); :func:`first_inside`
lowers ``first`` (per pixel column the index of the first sample known to be inside,
:data:`FAR` if none, -1 for a column never to evaluate) to each column's first inside
sample, ``zs`` top first, as evaluating every sample top down would find it (the sign as
images decide it: heightmaps).

How: one hierarchy of boxes, the root the whole square times all samples. Each level
splits every box ``k × k`` in x and y and ``kz`` in z (:func:`octree_splits`), prunes its
tape over the children with the culling kernels (or on the host tier), and then: a child
proved inside is passed on (a heightmap lowers its columns' ``first`` to its top sample);
a child proved outside is dropped; a heightmap drops a child whose every column already
has an inside sample at or above its top (occluded), splitting long-taped levels a layer
at a time so that what a layer finds drops boxes of the next before they are split; the
rest go on with their pruned tapes. The leaf boxes (``leaf × leaf`` pixels, :data:`THICK`
samples) are evaluated point by point a layer at a time (a heightmap's short-taped
layers a few at a time, :data:`MERGED_BOXES`: a call costs what ~200 boxes do; where the
leaves' parents hold short tapes, their level and the leaves in one kernel call,
:func:`~prospero_jax.renderers.column_search.split_search`): by the
leaf kernel (which lowers each square's columns to the first inside sample it finds,
searching only above what is known, not reading back the box's signs), or where the
pruned tapes stay long, by the source program's compiled closure once interpreting has
cost what compiling would (:mod:`~prospero_jax.renderers.compiled_tier`; the level above
such leaves is split by intervals alone, as nobody reads their tapes). A program whose tapes
nothing can prune has its levels bounded by its compiled interval closure on the same
terms. So the upper levels run once for
the whole depth (where a slab sweep ran them once per slab), and z is refined like x
and y.

Invariants: ``first`` only decreases, and only to a sample where the value is < 0 (an
inside box's top sample, or a leaf sample found < 0), so the result equals the dense
search's first inside sample; children are lane-ordered ``(z, row, column)`` within
their parent; the kernels compile per box shape, the closures per program shape (its
numbers are arguments), never per box or tape.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from prospero_jax.evaluators import host_cull as _host
from prospero_jax.evaluators.leaf_kernels import NOT_FOUND
from prospero_jax.evaluators.tape import Pruned, Tapes, run_rows
from prospero_jax.ir.program import Program
from prospero_jax.renderers import compiled_tier as _compiled
from prospero_jax.renderers.column_search import (
    SEARCH_ROWS,
    leaf_firsts,
    lower_firsts,
    search_job,
    split_search,
)
from prospero_jax.renderers.compiled_tier import Bounds
from prospero_jax.renderers.hierarchy import (
    SPLIT,
    Frontier,
    PendingTapes,
    _kernels,
    built,
    emitted,
    host_depths,
    kept_children,
    next_tapes,
    pay_rent,
    prune_level,
    root_tape,
    splits,
    tapes_of,
    tier,
)
from prospero_jax.renderers.tile_grid import as_tiles, paint_tiles, read_tiles, tile_max
from prospero_jax.renderers.view import Progress, Target
from prospero_jax.runtime import executables as _executables

#: A leaf box: ``LEAF × LEAF`` pixels and ``THICK`` depth samples, 1,024 points the leaf
#: kernel evaluates a row at a time (as a 2-D leaf tile); small in x and y, so intervals
#: near a surface are tight: tanglecube 512³ 0.18 s against 0.35 s for 16 × 16 × 16 boxes
#: and 2.8 s for 32 × 32 × 16 (experiments/RESULTS.md).
LEAF = 8
THICK = 16
#: Above the leaves, boxes holding more tape rows than this are split a layer at a time,
#: top down (each layer's boxes behind surfaces found above dropped first, bear 512³
#: 2.2 s against 2.5 s); fewer are split in one kernel call (sphere 512³ 25 ms against 53 ms
#: a layer at a time: a call costs ~1 ms; experiments/RESULTS.md).
LAYERED_ROWS = 1 << 16
#: A heightmap's consecutive layers of interpreted leaf boxes are evaluated in one call
#: while they hold at most this many boxes and rows (before the boxes behind what is
#: found are dropped): a call costs ~0.4 ms, the work of ~200 short-taped boxes, and a
#: layer of the colonnade's walls or the sphere's rim holds 100-500 boxes; a long-taped
#: box evaluated for nothing costs more than a call saves (experiments/RESULTS.md).
MERGED_BOXES = 2048
MERGED_ROWS = 8192
#: With ``thin`` (a heightmap's walk), the root's children are refined in z first
#: (:func:`octree_splits`' ``z_first``) when their pruned tapes hold at most this many rows
#: on average (a call's boxes all one way: splitting them both ways cost more calls than
#: it saved). The leaves' parents are then one leaf thick: a box proved inside there
#: hides the boxes behind it before they are split, and fewer parents hold fewer rows
#: (colonnade 1024³, 19 to 191 rows a box: the leaves' parents 4,966 boxes of 17,396
#: rows → 1,936 of 7,821, their level 23.7 → 14.6 ms, the frame ~110 → ~94 ms). Longer
#: tapes are split as before: their extra boxes cost more than they save (bear, 363 to 457
#: rows: 3-5 % slower with session 18's z-first schedule; experiments/RESULTS.md).
THIN_ROWS = 256
#: ``first`` of a column with no inside sample found yet (what the leaf kernel gives
#: such a column).
FAR = NOT_FOUND


def octree_splits(
    tiles: int,
    layers: int,
    pattern: Sequence[int] = SPLIT,
    *,
    small_first: bool = False,
    z_first: bool = False,
) -> tuple[tuple[int, int], ...]:
    """How each level splits its boxes, ``(k, kz)``: ``k × k`` in x and y, ``kz`` in z, from
    ``tiles × tiles`` leaf columns and ``layers`` leaf layers (powers of two) at the root:
    x and y as :func:`~prospero_jax.renderers.hierarchy.splits` has them (largest first),
    or with ``small_first`` smallest first (a 2 × 2 split at the root, where boxes are few,
    rather than above the leaves, where a heightmap's are many and 4 lanes a row waste the
    kernel: with normals, bear 1024³ 0.91×, tanglecube 0.76×; a mesh's walk gains nothing
    and compiles one kernel shape more: experiments/RESULTS.md), z by as much as x and y
    while layers are left, then by up to the pattern's largest split alone. With
    ``z_first`` (``tiles`` at least 16), the leaves' parents are thin: 8 leaves a side and
    one thick, split 8 × 8 × 1, from a 2 × 2 split that takes z the rest of the way
    (:data:`THIN_ROWS`)."""
    out, left = [], layers
    if z_first and tiles < 16:
        raise ValueError(f"{tiles} leaf columns a side: too few to split z first")
    factors = splits(tiles // 16 if z_first else tiles, pattern)
    for k in sorted(factors) if small_first else factors:
        kz = min(k, left)
        out.append((k, kz))
        left //= kz
    if z_first:
        return (*out, (2, left), (8, 1))
    while left > 1:
        kz = min(max(pattern), left)
        out.append((1, kz))
        left //= kz
    return tuple(out)


#: ``inside(side, rows, cols, tops, thick)``: the boxes of ``side`` pixels and ``thick``
#: samples at those corners and first samples are proved inside.
Inside = Callable[[int, np.ndarray, np.ndarray, np.ndarray, int], None]
#: ``leaves(part, tops)``: leaf boxes and their first samples (one layer, unless
#: :func:`walk` merges layers), to evaluate.
Leaves = Callable[[Frontier, np.ndarray], None]
#: ``search(front, layers, thick, (k, kz), boxes)``: the boxes of ``front`` (``thick``
#: samples from ``layers`` on) split ``k × k × kz`` into leaf boxes (their bounds
#: ``boxes``), pruned and evaluated at once
#: (:func:`~prospero_jax.renderers.column_search.split_search`): the counts of leaf boxes
#: proved inside, left ambiguous and searched, the searched ones' rows and the chunks of
#: depths they evaluated.
Search = Callable[[Frontier, np.ndarray, int, tuple[int, int], np.ndarray], np.ndarray]
#: ``keep(side, rows, cols, layers)``: which of these boxes (of ``side`` pixels, at those
#: corners and first samples) still need work (a mask).
Keep = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def walk(
    program: Program,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    target: Target,
    inside: Inside,
    leaves: Leaves,
    *,
    keep: Keep | None = None,
    bare: Callable[[Frontier], bool] | None = None,
    merge: bool = False,
    merge_bare: bool = False,
    leaf: int = LEAF,
    small_first: bool = False,
    thin: bool = False,
    bounds: Bounds | None = None,
    search: Search | None = None,
    level_splits: Sequence[tuple[int, int]] | None = None,
    leaf_thick: int = THICK,
    level_done: Callable[[int], None] | None = None,
    stats: list[dict[str, Any]] | None = None,
) -> None:
    """The octree over the pixel-centre columns ``xs × ys`` (a power-of-two square, at
    least ``leaf``) and the depth samples ``zs`` (a power-of-two count, a multiple of the
    leaf boxes' ``leaf_thick`` samples): boxes proved inside go to ``inside``, those proved
    outside are dropped, and the leaf boxes left ambiguous go to ``leaves`` a layer at a
    time, in the order of ``zs``. ``level_splits``: each level's split ``(k, kz)`` (default
    :func:`octree_splits`'). A 2-D image is the z-fixed case: one sample, leaf boxes one
    sample thick, a plan of ``(k, 1)`` splits (:func:`~prospero_jax.renderers.culled.
    render_culled`); then its kernels are the 2-D call shapes, and the host tier may take
    it under ``Target(tier="auto")`` (:func:`~prospero_jax.renderers.hierarchy.tier`: a
    single sample is no sweep), its levels' time paid as rent. ``level_done(levels)``, if
    given, is called after each prune call with the levels done (the root's children:
    1). ``keep``, if given, drops boxes before they are split or evaluated (e.g. those
    behind a surface already found); with it, levels whose boxes hold over
    :data:`LAYERED_ROWS` tape rows are split a layer at a time, so what one layer finds
    drops boxes of the next before they are split. ``bare``, if given and true of the
    boxes above the leaves (kernels only), says their leaves will be evaluated without
    tapes (the compiled tier): that level is then split by intervals alone and its leaf
    boxes come with no tapes (no rows, ``lengths`` 0). ``merge`` (with ``keep``) joins
    consecutive layers of leaf boxes that carry tapes into one call of ``leaves`` while
    they hold at most :data:`MERGED_BOXES` boxes and :data:`MERGED_ROWS` rows before
    ``keep`` (its boxes of several layers then kept by what was found before the first
    of them); ``merge_bare``: those without tapes too (the compiled leaves of a short
    program, whose calls cost more than their work). ``small_first``: the levels' splits
    smallest first (:func:`octree_splits`); ``thin`` (kernels only): the root's children
    with short tapes (:data:`THIN_ROWS`) refined in z first, where that splits boxes into
    no count of children the schedule does not (each count compiles its kernels).
    ``bounds``, if given, bounds the value over each level's boxes in place of the
    kernels, for a program whose tapes
    :func:`~prospero_jax.renderers.compiled_tier.never_prune` (every box then carries the
    root's tape; :func:`first_inside`; the prune kernels are then not readied, and a leaf
    kernel, if the compiled tier leaves any box to one, compiles when first called).
    ``search``, if given, takes the leaves' parents with short tapes
    (:data:`~prospero_jax.renderers.column_search.SEARCH_ROWS`; on the kernels, one device,
    tapes that prune) and finds and evaluates their leaf boxes itself (``leaves`` gets
    none of them).
    ``stats``, if a list, gets a dict per level and box shape (top down) and one for the
    leaves: the ``level`` (1: the root's children; 0: the leaves), the boxes' ``side``
    and samples (``thick``; ``box`` says both), boxes in, their rows, children proved
    inside, children left, wall seconds (the leaves found by ``search``: those searched,
    their rows and ``chunks`` of depths evaluated; its level's seconds count them)."""
    dtype, device, devices = target.dtype, target.device, target.devices
    side, samples = len(xs), len(zs)
    if samples % leaf_thick or samples & (samples - 1) or side & (side - 1) or side < leaf:
        raise ValueError(f"{side}² columns × {samples} samples: not powers of two")
    tapes = root_tape(program, dtype)
    tiles, layers_total = side // leaf, samples // leaf_thick
    schedule = (
        tuple(level_splits)
        if level_splits is not None
        else octree_splits(tiles, layers_total, small_first=small_first)
    )
    thin_plan = schedule
    # The same root split, then z first, if that needs no kernel lanes the schedule does
    # not (a shape costs an uncached first frame ~1 s). Not for a program whose tapes
    # nothing prunes: its levels are bounded by its compiled closure once bought, where z
    # first gains nothing (sphere, tanglecube 512³), and its first frames would compile
    # kernels for nothing (tanglecube 512³: +1.2 s).
    prunes = bounds is None and (thin or search is not None) and not _compiled.never_prune(tapes)
    if thin and prunes and len(schedule) > 1 and tiles // schedule[0][0] >= 16:
        (k, kz), *_ = schedule
        z_first = schedule[:1] + octree_splits(tiles // k, layers_total // kz, z_first=True)
        thin_plan = z_first if set(_lanes(z_first)) <= set(_lanes(schedule)) else schedule
    host, solid = False, samples > 1
    if bounds is None:  # the kernels prune the levels (readied at once) or the host does
        jobs = _kernels(
            _lanes(schedule), len(tapes), dtype, leaf, len(tapes.params), leaf_thick, large=solid
        )
        if search is not None and prunes:  # the last levels' leaves found in one call
            steps = dict.fromkeys((schedule[-1], thin_plan[-1]))
            jobs += [search_job(s, dtype, leaf, len(tapes.params), leaf_thick) for s in steps]
        host = tier(program, target, jobs, sweep=solid) == "host"
        if not host and len(devices) < 2:
            _executables.prepare(jobs, device)
    depths = host_depths(program, dtype) if host else None
    tally: dict[tuple[int, int, int], dict[str, Any]] = {}  # (depth, side, thick): counts

    def tallied(side: int, thick: int, depth: int = -1) -> dict[str, Any]:
        """The counts of the boxes of ``side`` pixels and ``thick`` samples made at
        ``depth`` (-1: the leaves evaluated)."""
        key = (depth, side, thick)
        if key not in tally:
            zeros = {"boxes": 0, "rows": 0, "inside": 0, "ambiguous": 0, "seconds": 0.0}
            level = {"level": depth + 1, "box": f"{side} px × {thick}", "side": side}
            tally[key] = {**level, "thick": thick, **zeros}
        return tally[key]

    def split(
        front: Frontier, layers: np.ndarray, thick: int, depth: int, plan: Sequence[tuple[int, int]]
    ) -> tuple[Frontier, np.ndarray, int, int, Sequence[tuple[int, int]]]:
        """One prune call: ``front``'s children by ``plan``'s first split, those proved
        inside passed on; the ambiguous ones returned with their layers, thickness, depth
        and the rest of the plan."""
        started = time.perf_counter()
        (k, kz), *rest = plan
        child, child_thick, count = front.side // k, thick // kz, k * k * kz
        lane_z, lane_row, lane_col = np.unravel_index(np.arange(count), (kz, k, k))
        rows = front.rows[:, None] + child * lane_row  # (parents, lanes)
        cols = front.cols[:, None] + child * lane_col
        tops = layers[:, None] + child_thick * lane_z
        boxes = _child_boxes(front, layers, thick, (k, kz), xs, ys, zs)
        tapeless = not rest and front.depth is None and bare is not None and bare(front)
        parents = tapes_of(front)
        if bounds is not None:
            level = _classified(*bounds(boxes), len(tapes))
        elif front.depth is not None:
            level = _host.prune_layers(parents, front.lengths, front.depth, boxes)
        else:
            level = prune_level(
                parents, front.lengths, boxes, device, len(tapes), devices, prune=not tapeless
            )
        # Children as flat places in the (parent, lane) arrays, each mask searched once.
        proved = np.flatnonzero(level.inside)
        inside(child, rows.ravel()[proved], cols.ravel()[proved], tops.ravel()[proved], child_thick)
        kept = kept_children(level.kept)  # lane by lane, as the next level's tapes are
        rows, cols, tops = (a.ravel()[kept] for a in (rows, cols, tops))
        if tapeless:
            children = Frontier(
                parents.take(np.zeros(0, np.int64)), np.zeros(len(kept), np.int64),
                rows, cols, child,
            )  # fmt: skip
        elif bounds is not None:  # every box's tape is the root's
            n = len(kept)
            children = Frontier(
                tapes.take(np.tile(np.arange(len(tapes)), n)), np.full(n, len(tapes)),
                rows, cols, child,
            )  # fmt: skip
        else:
            row, at = emitted(level, count)
            # Leaf boxes' tapes are built once a box is known to be evaluated.
            pending = keep is not None and front.depth is None and not rest
            children = Frontier(
                PendingTapes(parents, level, row, at)
                if pending
                else next_tapes(parents, row, level, at),
                level.kept.ravel()[kept].astype(np.int64),
                rows,
                cols,
                child,
                None if front.depth is None else front.depth[row],
            )
        entry = tallied(child, child_thick, depth)
        entry["boxes"] += len(front.lengths)
        entry["rows"] += int(front.lengths.sum())
        entry["inside"] += len(proved)
        entry["ambiguous"] += len(children.lengths)
        entry["seconds"] += time.perf_counter() - started
        if host:
            pay_rent(time.perf_counter() - started)
        if level_done is not None:
            level_done(depth + 1)
        return children, tops, child_thick, depth + 1, rest

    def visit(
        front: Frontier, layers: np.ndarray, thick: int, depth: int, plan: Sequence[tuple[int, int]]
    ) -> None:
        """``front``'s boxes in the order of their layers: split further by ``plan``
        (depth first), or, past its end, evaluated."""
        if not len(front.lengths):
            return
        if keep is None and layers.min() == layers.max():
            changes, order = np.array([0, len(layers)]), None  # one layer, one wave: whole
        else:
            # Boxes are sorted by layer, sliced into waves and kept by index; only the
            # boxes kept get their tapes gathered (a leaf level's boxes behind what was
            # found never do: tanglecube 512³'s leaf level reordered 483 k rows to
            # evaluate 127 k).
            order = np.argsort(layers, kind="stable")
            layers = layers[order]
            big = keep is not None and front.lengths.sum() > LAYERED_ROWS
            waves = layers if not plan or big else np.zeros_like(layers)
            changes = np.flatnonzero(np.r_[True, waves[1:] != waves[:-1], True])
            starts = np.concatenate([[0], np.cumsum(front.lengths)])  # each box's first row
        joins = len(front.tapes) or merge_bare
        if not plan and merge and keep is not None and joins:
            changes = _merged(changes, front.lengths[order], MERGED_BOXES, MERGED_ROWS)
        for a, b in itertools.pairwise(changes):
            if order is None:  # the whole front
                part, tops = front, layers
            else:
                boxes, tops = order[a:b], layers[a:b]
                if keep is not None:
                    mask = keep(front.side, front.rows[boxes], front.cols[boxes], tops)
                    boxes, tops = boxes[mask], tops[mask]
                if not len(boxes):
                    continue
                part = _boxes(front, boxes, starts)
            if plan:
                short = thin and depth == 1 and part.lengths.mean() <= THIN_ROWS
                rest = thin_plan[1:] if short else plan
                if search is not None and len(rest) == 1 and searches(part, rest[0], thick):
                    part, tops = searched(part, tops, thick, rest[0], depth)
                if len(part.lengths):
                    visit(*split(part, tops, thick, depth, rest))
                continue
            started = time.perf_counter()
            leaves(built(part), tops)
            entry = tallied(front.side, thick)
            entry["boxes"] += len(part.lengths)
            entry["rows"] += int(part.lengths.sum())
            entry["seconds"] += time.perf_counter() - started

    def searched(
        front: Frontier, layers: np.ndarray, thick: int, step: tuple[int, int], depth: int
    ) -> tuple[Frontier, np.ndarray]:
        """``front``'s boxes of short tapes (:data:`SEARCH_ROWS`) split by ``step`` into
        leaf boxes and evaluated at once by ``search``; the others returned, with their
        first samples, to be split as before (in any order, boxes find the same first
        samples)."""
        assert search is not None
        started = time.perf_counter()
        fits = front.lengths <= SEARCH_ROWS
        within = np.concatenate([[0], np.cumsum(front.lengths)])
        longer, later = _boxes(front, np.flatnonzero(~fits), within), layers[~fits]
        if not fits.all():
            front, layers = _boxes(front, np.flatnonzero(fits), within), layers[fits]
        boxes = _child_boxes(front, layers, thick, step, xs, ys, zs)
        found = search(front, layers, thick, step, boxes)
        (k, kz), [proved, ambiguous, looked, rows, chunks] = step, found
        entry = tallied(front.side // k, thick // kz, depth)
        entry["boxes"] += len(front.lengths)
        entry["rows"] += int(front.lengths.sum())
        entry["inside"] += int(proved)
        entry["ambiguous"] += int(ambiguous)
        entry["seconds"] += time.perf_counter() - started
        entry = tallied(front.side // k, thick // kz)  # the leaves: those searched
        entry["boxes"] += int(looked)
        entry["rows"] += int(rows)
        entry["chunks"] = entry.get("chunks", 0) + int(chunks)
        return longer, later

    def searches(front: Frontier, step: tuple[int, int], thick: int) -> bool:
        """Whether ``search`` takes ``front``'s boxes split by ``step`` into leaves."""
        (k, kz), lengths = step, front.lengths
        return (
            prunes  # its kernel readied with the others (:func:`search_job`)
            and front.depth is None
            and len(devices) < 2
            and front.side // k == leaf
            and thick // kz == leaf_thick
            and isinstance(front.tapes, Tapes)
            and int(lengths.min()) <= SEARCH_ROWS
            and not (bare is not None and bare(front))
        )

    zero = np.zeros(1, np.int64)
    root = Frontier(tapes, np.array([len(tapes)], np.int64), zero, zero, side, depths)
    visit(root, zero, samples, 0, schedule)
    if stats is not None:
        levels = sorted(key for key in tally if key[0] >= 0)
        stats.extend(tally[key] for key in [*levels, *(key for key in tally if key[0] < 0)])


def first_inside(
    program: Program,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    target: Target,
    first: np.ndarray,
    *,
    leaf: int = LEAF,
    points: Program | None = None,
    progress: Progress | None = None,
    stats: list[dict[str, Any]] | None = None,
) -> None:
    """Lower ``first`` (``(side, side)``, int32 (or int64), in place) to each column's first sample
    inside (module docstring), ``zs`` top first: :func:`walk`, each box proved inside
    lowering its columns to its top sample, boxes behind what is found dropped, leaves
    evaluated by the leaf kernel (with their parents' level, in one call, where its tapes
    are short: :func:`~prospero_jax.renderers.column_search.split_search`) or the compiled
    closure. ``points``: the program the
    compiled closure evaluates (default ``program``), one whose sign is ``program``'s
    (a sign program's source: its atoms, each a dense sum of products when its numbers are
    arguments, cost compiled code what they save interpreters; colonnade's sign program
    at 2,048 leaf boxes 425 against 28 ms for the source). ``progress(done, total)``
    counts leaf layers; ``stats`` as :func:`walk` takes it."""
    leaves = program if points is None else points
    layers_total = len(zs) // THICK
    # The largest ``first`` of each leaf × leaf square, kept with ``first``: whether a box
    # still has an open column reads its squares, not its pixels (64× fewer at 8 px).
    coarse = tile_max(first, leaf)

    def lower(side: int, rows: np.ndarray, cols: np.ndarray, tops: np.ndarray, _: int) -> None:
        _lower(first, side, rows, cols, tops, coarse, leaf)

    def open_(side: int, rows: np.ndarray, cols: np.ndarray, layers: np.ndarray) -> np.ndarray:
        found = tile_max(read_tiles(coarse, side // leaf, rows // leaf, cols // leaf), side // leaf)
        return np.asarray(found[:, 0, 0] > layers, bool)

    def evaluate(part: Frontier, tops: np.ndarray) -> None:
        started = time.perf_counter()
        depths = zs[tops[:, None] + np.arange(THICK)]  # (boxes, THICK)
        side, rows, cols = part.side, part.rows, part.cols
        tops = tops.astype(np.int32)
        # A box whose tape reads no z needs no depth below its first (each column's
        # value is the same at every depth: colonnade 1024³'s walls below what is found,
        # a quarter of its leaf boxes; its leaf calls 35 → 30 ms, experiments/RESULTS.md).
        if not len(part.tapes) or _compiled.compiles(part, target, leaves):  # no tapes
            known = read_tiles(first, side, rows, cols)
            index = _compiled.firsts(leaves, part, xs, ys, depths, tops, known)  # [box, y, x]
        elif part.depth is None and len(target.devices) < 2:
            # The leaf kernel reads each square's ``first`` once, searches a box's columns
            # only above what is known (an earlier box of the call may have found it) and
            # lowers the square itself: no indices per box to lower here (colonnade
            # 1024³: lowering a layer at a time cost ~7 ms a frame).
            caps = np.where(tapes_of(part).z_free(part.lengths), 1, THICK).astype(np.int32)
            calls = lower_firsts(part, xs, ys, depths, target, first, tops, caps)
            _compiled.pay(leaves, time.perf_counter() - started)
            for r, c, after in calls:
                _lower_coarse(coarse, leaf, side, r, c, after)
            index = None  # lowered already
        else:  # the host tier, or calls spread over devices: indices per box (FAR: none)
            limits = read_tiles(first, side, rows, cols) - tops[:, None, None]
            flat = tapes_of(part).z_free(part.lengths)
            limits[flat] = np.minimum(limits[flat], 1)
            index = leaf_firsts(part, xs, ys, depths, target, limits, offsets=tops)
            _compiled.pay(leaves, time.perf_counter() - started)
        if index is not None:
            # Indices lowered a layer at a time (merged layers hold a column once each;
            # what an upper layer lowered, a lower one reads): each square read, lowered
            # and written back; in ``first``'s dtype (int32) and a layer's boxes at a
            # time, so that the temporaries stay in cache.
            layers = np.flatnonzero(np.r_[True, tops[1:] != tops[:-1], True])
            for a, b in itertools.pairwise(layers.tolist()):
                r, c = rows[a:b], cols[a:b]
                lowered = read_tiles(first, side, r, c)
                np.minimum(lowered, index[a:b], out=lowered)
                paint_tiles(first, side, r, c, lowered)
                _lower_coarse(coarse, leaf, side, r, c, lowered)
        if progress is not None:
            progress(int(tops.max()) // THICK + 1, layers_total)

    def compiled(front: Frontier) -> bool:  # the leaves below go to the compiled tier
        return _compiled.compiles(front, target, leaves)

    def search(
        front: Frontier, tops: np.ndarray, thick: int, step: tuple[int, int], boxes: np.ndarray
    ) -> np.ndarray:
        started = time.perf_counter()
        calls, counts = split_search(front, tops, step, boxes, xs, ys, zs, thick, target, first)
        # Rent for the compiled tier, whose leaves would spare this level too.
        _compiled.pay(leaves, time.perf_counter() - started)
        for r, c, after in calls:
            _lower_coarse(coarse, leaf, leaf, r, c, after)
        if progress is not None:
            progress(int(tops.max()) // THICK + 1, layers_total)
        return counts

    walk(
        program, xs, ys, zs, target, lower, evaluate,
        keep=open_, bare=compiled, merge=True, merge_bare=_compiled.merges(leaves),
        leaf=leaf, small_first=True, thin=True,
        bounds=_compiled.bounds_of(program, leaves, target), search=search, stats=stats,
    )  # fmt: skip
    if progress is not None:
        progress(layers_total, layers_total)


def _lower_coarse(
    coarse: np.ndarray, leaf: int, side: int, rows: np.ndarray, cols: np.ndarray,
    lowered: np.ndarray,
) -> None:  # fmt: skip
    """``coarse`` (each ``leaf``-pixel square's largest ``first``) after the ``side``-pixel
    squares at ``(rows, cols)`` (each once) were lowered to ``lowered`` (``(squares, side,
    side)``)."""
    squares = tile_max(lowered, leaf)  # (boxes, side / leaf, side / leaf)
    blocks = as_tiles(coarse, side // leaf)
    blocks[rows // side, :, cols // side, :] = squares


def _classified(lo: np.ndarray, hi: np.ndarray, rows: int) -> Pruned:
    """Boxes of bounds ``lo``, ``hi`` as a prune level with ``prune=False`` classes them
    (inside where ``hi < 0``, ambiguous unless inside or ``lo >= 0``: NaN is ambiguous),
    each ambiguous box keeping all ``rows`` rows of its tape."""
    inside = hi < 0
    kept = np.where(~inside & ~(lo >= 0), rows, 0).astype(np.int32)
    return Pruned(lo, hi, inside, kept, np.zeros(0, np.int8), *[np.zeros(0, np.int32)] * 2)


def _merged(bounds: np.ndarray, lengths: np.ndarray, boxes: int, rows: int) -> np.ndarray:
    """The boundaries ``bounds`` of consecutive runs of boxes (with tapes of ``lengths``
    rows), fewer: runs joined, first to last, greedily, while a joined run holds at most
    ``boxes`` boxes and ``rows`` rows."""
    ends = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    out, last = [int(bounds[0])], int(bounds[0])
    for before, bound in itertools.pairwise(bounds.tolist()):
        if (bound - last > boxes or ends[bound] - ends[last] > rows) and before != last:
            out.append(before)
            last = before
    out.append(int(bounds[-1]))
    return np.array(out)


def _child_boxes(
    front: Frontier,
    layers: np.ndarray,
    thick: int,
    step: tuple[int, int],
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
) -> np.ndarray:
    """The bounds of ``front``'s boxes' children (``thick`` samples from ``layers`` on,
    split ``step = (k, kz)``): ``(parents, [xlo, xhi, ylo, yhi, zlo, zhi], lanes)``, lanes
    ``(z, row, column)``; each bound read per parent and column, row or layer of
    children, then broadcast (not read once per child)."""
    k, kz = step
    child, child_thick = front.side // k, thick // kz
    steps, layer = child * np.arange(k), layers[:, None] + child_thick * np.arange(kz)
    left, upper = front.cols[:, None] + steps, front.rows[:, None] + steps  # first pixels
    top, end = zs[layer], zs[layer + child_thick - 1]
    boxes = np.empty((len(layers), 6, kz, k, k), xs.dtype)
    boxes[:, 0], boxes[:, 1] = (xs[c][:, None, None, :] for c in (left, left + child - 1))
    boxes[:, 2], boxes[:, 3] = (ys[r][:, None, :, None] for r in (upper + child - 1, upper))
    boxes[:, 4], boxes[:, 5] = (f(top, end)[:, :, None, None] for f in (np.minimum, np.maximum))
    return boxes.reshape(len(layers), 6, k * k * kz)


def _lanes(plan: Sequence[tuple[int, int]]) -> list[int]:
    """Each level's children per parent (its kernels' lanes)."""
    return [k * k * kz for k, kz in plan]


def _boxes(front: Frontier, index: np.ndarray, starts: np.ndarray) -> Frontier:
    """Boxes ``index`` of ``front`` (in that order), their tapes gathered (sliced where
    they are consecutive); ``starts``: each box's first row, then the rows' count
    (``front``'s, computed once for all its waves: colonnade 1024³'s leaf level, 68 k
    boxes, recounted them 23 times a frame, 3.5 ms)."""
    if len(index) and (np.diff(index) == 1).all():
        a, b = int(index[0]), int(index[-1]) + 1
        rows: np.ndarray | slice = slice(int(starts[a]), int(starts[b]))
    else:
        rows = run_rows(starts[index], front.lengths[index])
    depth = None if front.depth is None else front.depth[rows]
    return Frontier(
        front.tapes.take(rows), front.lengths[index], front.rows[index], front.cols[index],
        front.side, depth,
    )  # fmt: skip


def _lower(
    first: np.ndarray,
    side: int,
    rows: np.ndarray,
    cols: np.ndarray,
    tops: np.ndarray,
    coarse: np.ndarray | None = None,
    leaf: int = LEAF,
) -> None:
    """``first`` lowered to ``tops`` over the ``side``-pixel squares at ``(rows, cols)``
    (a square may come more than once: its smallest top counts); and ``coarse`` (each
    ``leaf``-pixel square's largest ``first``) with it: the largest after the lowering is
    ``max(min(f, top)) = min(max(f), top)``."""
    if not len(rows):
        return
    order = np.lexsort((tops, cols, rows))
    key = rows[order] * first.shape[1] + cols[order]
    once = order[np.r_[True, key[1:] != key[:-1]]]  # each square's smallest top
    rows, cols, tops = rows[once], cols[once], tops[once][:, None, None]
    for grid, scale in ((first, 1), (coarse, leaf)):
        if grid is not None:  # squares' rows moved whole (read_tiles, paint_tiles)
            r, c, s = rows // scale, cols // scale, side // scale
            paint_tiles(grid, s, r, c, np.minimum(read_tiles(grid, s, r, c), tops))
