"""Culling on the host: boolean tapes pruned and leaves decided in NumPy, depth by depth.

Input: tapes (:class:`~prospero_jax.evaluators.tape.Tapes`, many concatenated) whose rows
are inputs, constants, atoms, ``min`` and ``max`` only (:func:`layered`: a sign program
such as prospero's, its chains of ``min``/``max`` balanced by
:func:`~prospero_jax.ir.passes.balance_extrema`), and each row's depth
(:func:`row_depths`: the longest chain below it, 0 for a leaf).
Output, what the XLA kernels of :mod:`~prospero_jax.evaluators.cull` and
:mod:`~prospero_jax.evaluators.leaf_kernels` give for the same
tapes, with nothing to compile or load (the host tier of
:func:`prospero_jax.renderers.hierarchy.tier`):

* :func:`prune_layers` (each tape → its child boxes): :func:`~prospero_jax.evaluators.
  cull.prune_kernel`'s outputs (a :class:`Pruned`), by the same rules: the op table's
  interval, choice and sign-choice rules with NumPy as the array namespace, and the
  kernel's need, renumbering and stand-in rules (tests check the two agree row for row);
* :func:`leaf_signs` (each tape → its tile of pixels): where the value is < 0, as
  :func:`~prospero_jax.evaluators.leaf_kernels.leaf_kernel` decides it, bit for bit.

How: the rows of all tapes are grouped by (depth, opcode), and each group is one NumPy
step for every row and child (or pixel) at once: the leaves first, then each depth's
``min`` rows and ``max`` rows, their operands read with one gather. Needs go back up
depth by depth (a row's users are all deeper than it); kept rows' new indices are
cumulative sums; stand-ins follow chosen operands depth by depth. A level costs a few
hundred NumPy calls whatever its number of rows, where the prune kernel's XLA loop pays
~140 ns a row and a pass (experiments/RESULTS.md): a tape of depth ``d`` takes ``O(d)``
steps, which is why the chains are balanced first, and why tapes deeper than
:data:`MAX_DEPTH` are left to the kernels.

Rounding: NumPy keeps subnormal numbers where XLA:CPU, which the images are judged by,
flushes them to zero. So the constants are read flushed, every leaf's interval is widened
by an absolute margin that covers what flushing can change in its value
(:func:`_flush_margin`, ~1e-28 for prospero's atoms; a bound that close to 0 leaves its
tile undecided), and an atom whose NumPy value at some pixel lies within that margin of
0 is evaluated again with XLA's flushing (:class:`_Flushing`). Everything above the
leaves is exact: ``min``, ``max`` and comparisons, and a ``min``'s or ``max``'s sign
follows from its arguments' signs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from prospero_jax.evaluators.tape import IMMEDIATE, Pruned, Tapes
from prospero_jax.ir.ops import CONST, OPCODE, OPS, VAR_X, VAR_Y, VAR_Z, Op, interval_step

#: Needs, as in :mod:`prospero_jax.evaluators.kernel_rows`: nothing, the sign (< 0), the value.
NONE, LESS, VALUE = 0, 1, 4
MIN, MAX = OPCODE["min"], OPCODE["max"]
_LEAVES = frozenset((VAR_X, VAR_Y, VAR_Z, CONST)) | {
    code for code, op in enumerate(OPS) if op.source_interval is not None
}
_OPS = _LEAVES | {MIN, MAX}
assert OPS[MIN].sign_pass == OPS[MAX].sign_pass == "same"  # what the leaves' sign rule reads
#: The deepest tape pruned layer by layer (deeper ones go to the prune kernel).
MAX_DEPTH = 64
#: Atom rows evaluated at once by :func:`leaf_signs` (256 tiles of 32 × 32 pixels: 1 MiB a
#: temporary, so a quadric's stay in a 2 MiB cache; 1.5× quicker than all at once).
ATOM_ROWS = 256
#: 2^-96: the margin's scale, far above what flushing subnormals (< 2^-126) can change.
_TINY = 2.0**-96


def layered(ops: np.ndarray) -> bool:
    """Whether tapes of these opcodes can be pruned here: leaves, ``min`` and ``max``."""
    return bool(np.isin(ops, list(_OPS)).all())


def row_depths(tapes: Tapes) -> np.ndarray:
    """Each row's depth in one tape: 0 for a leaf, else 1 + its deepest register operand."""
    depth = [0] * len(tapes)  # Python's lists: a NumPy scalar per row would cost 10×
    extrema = (MIN, MAX)
    for i, (op, (a, b)) in enumerate(zip(tapes.ops.tolist(), tapes.args.tolist(), strict=True)):
        if op in extrema:
            depth[i] = 1 + max(depth[a] if a >= 0 else 0, depth[b] if b >= 0 else 0)
    return np.array(depth, np.int32)


def flushed(a: np.ndarray) -> np.ndarray:
    """``a`` with subnormal numbers replaced by zeros of their sign, as XLA:CPU reads and
    writes them."""
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, a * 0, a)


def flushed_constants(tapes: Tapes) -> np.ndarray:
    """The tape's constants (immediates and ``const`` rows) as XLA:CPU reads them (an
    atom row's constant is an index into the atoms' table: kept as it is)."""
    atoms = np.isin(tapes.ops, [code for code in _LEAVES if OPS[code].source is not None])
    return np.where(atoms, tapes.consts, flushed(tapes.consts))


class _Flushing(np.ndarray):
    """An array whose arithmetic flushes subnormal inputs and results to zero, as XLA:CPU
    does (its flush-to-zero and denormals-are-zero modes): the few pixels whose value
    NumPy cannot place on the right side of 0 alone are evaluated with these."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        def plain(x: Any) -> Any:
            x = x.view(np.ndarray) if isinstance(x, np.ndarray) else x
            return flushed(x) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x

        out = getattr(ufunc, method)(*map(plain, inputs), **kwargs)
        if isinstance(out, np.ndarray) and out.dtype.kind == "f":
            return flushed(out).view(_Flushing)
        return out


def _flush_margin(params: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """An absolute bound on what flushing subnormals to zero changes in an atom's value
    (``params``: ``(PARAMS, n, ...)``) where the inputs' magnitudes are below ``reach - 1``:
    every flushed step moves a value by < 2^-126, and a later step multiplies that by at
    most the product of the atom's numbers' and the inputs' magnitudes (a weight times a
    line). 2^-96 times that, so never subnormal itself; inf if it overflows."""
    with np.errstate(over="ignore"):
        scale = 1 + np.abs(params).sum(axis=0)
        return np.asarray((_TINY * scale * scale) * (reach * reach))


def _leaf_bounds(
    code: int, rows: np.ndarray, tapes: Tapes, box: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Intervals of leaf rows ``rows`` (all of opcode ``code``) over their boxes ``box``
    (``(6, n, lanes)``), widened by the flushing margin."""
    if code == CONST:
        c = flushed_constants(tapes)[rows][:, None]
        lo = hi = np.broadcast_to(c, box.shape[1:])
        margin = np.asarray(_TINY, box.dtype)
    elif code in (VAR_X, VAR_Y, VAR_Z):
        k = {VAR_X: 0, VAR_Y: 2, VAR_Z: 4}[code]
        lo, hi, margin = box[k], box[k + 1], np.asarray(_TINY, box.dtype)
    else:
        p = tapes.params[tapes.consts[rows].astype(np.int64)].T[:, :, None]
        source = OPS[code].source_interval
        assert source is not None
        with np.errstate(all="ignore"):
            lo, hi = source(np, p, (box[0], box[1]), (box[2], box[3]), (box[4], box[5]))
        margin = _flush_margin(p, 1 + np.abs(box).max(axis=0)).astype(box.dtype)
    with np.errstate(all="ignore"):
        return lo - margin, hi + margin


class _Layout(NamedTuple):
    """Where the rows of concatenated tapes read: each tape's first row (``starts``),
    each row's tape, whether its operands are immediates, its register operands' rows in
    the concatenation (``ga``, ``gb``; 0 where none), and the rows grouped by (depth,
    opcode), shallowest first: ``(depth, opcode, rows)``."""

    starts: np.ndarray
    tape: np.ndarray
    imm_a: np.ndarray
    imm_b: np.ndarray
    ga: np.ndarray
    gb: np.ndarray
    groups: list[tuple[int, int, np.ndarray]]


def _layout(tapes: Tapes, lengths: np.ndarray, depth: np.ndarray) -> _Layout:
    ops, args = tapes.ops, tapes.args
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    tape = np.repeat(np.arange(len(lengths)), lengths)
    imm_a, imm_b = args[:, 0] == IMMEDIATE, args[:, 1] == IMMEDIATE
    binary = np.isin(ops, (MIN, MAX))
    ga = np.where(binary & ~imm_a, starts[tape] + args[:, 0], 0)
    gb = np.where(binary & ~imm_b, starts[tape] + args[:, 1], 0)
    order = np.lexsort((ops, depth))
    keys = depth[order].astype(np.int64) * len(OPS) + ops[order]
    split = np.split(order, np.flatnonzero(np.diff(keys)) + 1)
    groups = [(int(depth[g[0]]), int(ops[g[0]]), g) for g in split if len(g)]
    return _Layout(starts, tape, imm_a, imm_b, ga, gb, groups)


def prune_layers(tapes: Tapes, lengths: np.ndarray, depth: np.ndarray, boxes: np.ndarray) -> Pruned:
    """Interval-evaluate and prune every tape (``lengths`` rows each, concatenated in
    ``tapes``; ``depth`` per row) over its ``lanes`` child boxes ``boxes[t] = [xlo, xhi,
    ylo, yhi, zlo, zhi] × lanes``: the prune kernel's outputs (module docstring)."""
    rows, lanes, dtype = len(tapes), boxes.shape[2], boxes.dtype
    starts, tape, imm_a, imm_b, ga, gb, groups = _layout(tapes, lengths, depth)
    roots = starts + lengths - 1
    binary = np.isin(tapes.ops, (MIN, MAX))
    consts = flushed_constants(tapes)

    lo = np.empty((rows, lanes), dtype)
    hi = np.empty((rows, lanes), dtype)
    choice = np.zeros((rows, lanes), np.int8)

    def operands(g: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        c = consts[g][:, None]
        ia, ib = imm_a[g][:, None], imm_b[g][:, None]
        a = (np.where(ia, c, lo[ga[g]]), np.where(ia, c, hi[ga[g]]))
        b = (np.where(ib, c, lo[gb[g]]), np.where(ib, c, hi[gb[g]]))
        return a, b

    for d, code, g in groups:
        if d == 0:
            box = np.moveaxis(boxes[tape[g]], 1, 0)  # (6, n, lanes)
            lo[g], hi[g] = _leaf_bounds(code, g, tapes, box)
            continue
        a, b = operands(g)
        op = OPS[code]
        with np.errstate(invalid="ignore"):
            lo[g], hi[g] = interval_step(op, np, a, b)
        assert op.choose is not None
        choice[g] = op.choose(np, a, b)

    root_lo, root_hi = lo[roots], hi[roots]
    inside = root_hi < 0
    ambiguous = ~inside & ~(root_lo >= 0)  # NaN bounds are ambiguous too

    # Needs, from the roots down: a row's users are all deeper than it.
    need = np.zeros((rows, lanes), np.int8)
    need[roots] = np.where(ambiguous, LESS, NONE)
    codes = need.copy()
    lane = np.arange(lanes)
    for d, code, g in reversed(groups):
        if d == 0:
            codes[g] = need[g]
            continue
        a, b = operands(g)
        op = OPS[code]
        wanted, ch = need[g], choice[g]
        passed = np.where(wanted == NONE, NONE, VALUE).astype(np.int8)
        clean = ~(np.isnan(a[0]) | np.isnan(a[1]) | np.isnan(b[0]) | np.isnan(b[1]))
        usable = clean & (wanted == LESS)
        assert op.sign_choose is not None
        chosen = op.sign_choose(np, a, b, False)
        sign_choice = np.where(usable & (ch == 0), chosen, 0).astype(np.int8)
        passed = np.where(usable | (ch != 0), wanted, passed)
        ch = np.where(ch != 0, ch, sign_choice)
        to_a = np.where((ch != 2) & ~imm_a[g][:, None], passed, NONE)
        to_b = np.where((ch != 1) & ~imm_b[g][:, None], passed, NONE)
        for target, sent in ((ga[g], to_a), (gb[g], to_b)):
            flat = need.reshape(-1)
            at = target[:, None] * lanes + lane
            for flag in (LESS, VALUE):  # duplicates write the same bit: no scatter-add
                hit = (sent & flag) != 0
                flat[at[hit]] |= flag
        codes[g] = wanted + 8 * sign_choice

    # Renumbering: a kept row's index in its child tape is a cumulative count.
    ch = np.where(choice != 0, choice, codes >> 3)
    to_constant = ((ch == 1) & imm_a[:, None]) | ((ch == 2) & imm_b[:, None])
    stays = (ch == 0) | to_constant
    e = ((codes & 7) != NONE) & stays
    count = np.cumsum(e, axis=0, dtype=np.int32)
    before = np.concatenate([np.zeros((1, lanes), np.int32), count])[starts]  # (parents, L)
    stand_in = count - e - before[tape]
    kept = count[roots] - before
    for d, _, g in groups:  # replaced rows stand for their chosen operand's stand-in
        if d == 0:
            continue
        c = ch[g]
        replaced = ~stays[g]
        if replaced.any():
            stand_in[g] = np.where(
                replaced,
                np.where(c == 1, stand_in[ga[g]], stand_in[gb[g]]),
                stand_in[g],
            )
    new_a = np.zeros((rows, lanes), np.int32)
    new_b = np.zeros((rows, lanes), np.int32)
    new_a[binary] = np.where(imm_a[binary][:, None], IMMEDIATE, stand_in[ga[binary]])
    new_b[binary] = np.where(imm_b[binary][:, None], IMMEDIATE, stand_in[gb[binary]])
    emit = (e * (1 + to_constant)).astype(np.int8)
    return Pruned(
        root_lo, root_hi, inside, kept, emit.reshape(-1), new_a.reshape(-1), new_b.reshape(-1)
    )


def leaf_signs(
    tapes: Tapes,
    lengths: np.ndarray,
    depth: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
) -> np.ndarray:
    """Whether each tape's value is < 0 at its pixels, as XLA:CPU's leaf kernel decides it:
    ``(tapes, side, side)``, tape ``t`` at ``(xs[t, col], ys[t, row], zs[t])``.

    Depth by depth over all the tapes at once (the pruner's grouping), with the op table's
    value rules in NumPy. Each row holds its value's sign class, :data:`NOT_BELOW` (>= 0),
    :data:`BELOW` (< 0) or :data:`UNORDERED` (NaN), one byte a pixel: ``min`` is < 0 where
    either argument is (the larger class, NaN winning), ``max`` where both are (the
    smaller, NaN winning), as the op table's values say. So the result is XLA's wherever
    every atom's NumPy value is further from 0 than what flushing subnormals can change
    (:func:`_flush_margin`); an atom row with a pixel closer than that is evaluated again
    with XLA's flushing (:class:`_Flushing`). Memory: a byte a row and pixel (callers
    pass a few thousand rows at a time).
    """
    xs, ys, zs = flushed(xs), flushed(ys), flushed(zs)
    side = xs.shape[1]
    consts = flushed_constants(tapes)
    starts, tape, imm_a, imm_b, ga, gb, groups = _layout(tapes, lengths, depth)
    signs = np.empty((len(tapes), side, side), np.int8)
    x, y, z = xs[:, None, :], ys[:, :, None], zs[:, None, None]
    reach = 1 + np.maximum(np.abs(xs).max(axis=1), np.abs(ys).max(axis=1))
    reach = np.maximum(reach, 1 + np.abs(zs))[:, None, None]
    for _, code, g in groups:
        op, t = OPS[code], tape[g]
        if code == CONST:
            signs[g] = _sign(consts[g][:, None, None])
        elif code in (VAR_X, VAR_Y, VAR_Z):
            signs[g] = _sign({VAR_X: x, VAR_Y: y, VAR_Z: z}[code][t])
        elif op.source is not None:
            # A few hundred rows at a time: an atom's temporaries then stay in the cache.
            for part in np.array_split(g, -(-len(g) // ATOM_ROWS)):
                at = tape[part]
                params = tapes.params[consts[part].astype(np.int64)]
                signs[part] = _atom_signs(op, params, x[at], y[at], z[at], reach[at])
        else:
            a, b = signs[ga[g]], signs[gb[g]]
            if imm_a[g].any() or imm_b[g].any():
                c = _sign(consts[g])[:, None, None]
                a = np.where(imm_a[g][:, None, None], c, a)
                b = np.where(imm_b[g][:, None, None], c, b)
            if code == MIN:
                signs[g] = np.maximum(a, b)
            else:
                signs[g] = np.where(np.maximum(a, b) == UNORDERED, UNORDERED, np.minimum(a, b))
    return np.asarray(signs[starts + lengths - 1] == BELOW)


def _atom_signs(
    op: Op, params: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray, reach: np.ndarray
) -> np.ndarray:
    """Sign classes of atom rows (``params``: their numbers, a row each) at their tiles'
    pixels, evaluated again with XLA's flushing where a value is within the flushing
    margin of 0 (:func:`leaf_signs`)."""
    source = op.source
    assert source is not None
    p = params.T[:, :, None, None]
    with np.errstate(all="ignore"):
        v = source(np, p, x, y, z)
        margin = _flush_margin(p, reach)
    unsure = np.flatnonzero(np.abs(v).min(axis=(1, 2)) < margin[:, 0, 0])
    if len(unsure):
        with np.errstate(all="ignore"):
            v[unsure] = source(
                np, p[:, unsure].view(_Flushing), x[unsure].view(_Flushing),
                y[unsure].view(_Flushing), z[unsure].view(_Flushing),
            )  # fmt: skip
    return _sign(v)


#: A value's sign class in :func:`leaf_signs`.
NOT_BELOW, BELOW, UNORDERED = 0, 1, 2


def _sign(v: np.ndarray) -> np.ndarray:
    """``v``'s sign classes, one byte each (a pass for < 0 and one for NaN: the leaves'
    largest cost after the atoms themselves)."""
    classes = (v < 0).view(np.int8)
    unordered = np.isnan(v)
    if unordered.any():
        classes[unordered] = UNORDERED
    return classes
