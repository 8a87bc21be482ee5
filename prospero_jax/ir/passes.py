"""Passes: Program → Program rewrites, and analyses of a Program.

Input: a :class:`~prospero_jax.ir.program.Program`.
Output: an equivalent Program (same value at every point, bit for bit in float64), or
statistics about it.

Rewrites (each returns a valid Program and keeps the surviving instructions' IDs):

* :func:`fold_constants`: an instruction whose arguments are all constants becomes a
  ``const`` holding its float64 value, when that value is finite;
* :func:`deduplicate`: identical constants (same bits) and identical instructions (same
  opcode and arguments, commutative ones in either order) are merged;
* :func:`eliminate_dead_code`: instructions the last one does not depend on are dropped;
* :func:`simplify`: all three, in that order; ``by_value=False`` merges no two numbers
  (constants, atoms) of equal value, so the result's structure is its input's
  structure's alone (the compiled closures of a solid's turned views, one per shape);
* :func:`balance_extrema`: each chain of ``min`` (or ``max``) rows, as a union of many
  shapes is written, becomes a balanced tree over the same arguments (exact: ``min`` and
  ``max`` are exact, associative and commutative, NaN included; only which of ``-0`` and
  ``+0`` a tie returns may change): depth log n instead of n, so evaluators that work
  depth by depth (:mod:`prospero_jax.evaluators.host_cull`) take few steps;
* :func:`fold_hulls`: in each such tree, the ``affine`` arguments (rows of a specialised
  program) become ``affine-max`` (``affine-min``) atoms of up to four forms each (exact:
  the atom computes each form as the ``affine`` row does and takes their extremum): a
  convex polygon is one row, not seven, for interpreters that pay per row.

Analyses: :func:`last_uses` (the liveness the evaluators use to free values early),
:func:`max_live`, :func:`allocate_registers` (the point interpreter's register file),
:func:`depth`, :func:`dimensions` and :func:`describe` (what ``prospero info`` prints).
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable
from typing import Any

import numpy as np

from prospero_jax.ir.ops import (
    AFFINE,
    AFFINE_MAX,
    AFFINE_MIN,
    ATOMS,
    CONST,
    HULL_FORMS,
    INPUTS,
    OPCODE,
    OPS,
    PARAMS,
    VAR_Z,
)
from prospero_jax.ir.program import Program, items


def _select(program: Program, keep: np.ndarray, target: np.ndarray) -> Program:
    """Keep rows ``keep`` (a boolean mask); ``target[j]`` is the row j's uses are sent to."""
    new_index = np.cumsum(keep, dtype=np.int64) - 1
    args = program.args.copy()
    used = args >= 0
    args[used] = new_index[target[args[used]]]
    return Program(
        opcodes=program.opcodes[keep],
        args=args[keep],
        consts=program.consts[keep],
        ids=tuple(i for i, k in zip(program.ids, items(keep), strict=True) if k),
        source=program.source,
        params=program.params[keep[np.isin(program.opcodes, ATOMS)]],
    )


def fold_constants(program: Program) -> Program:
    """Replace each instruction whose arguments are all constants by its float64 value.

    Results that are not finite (e.g. ``ln 0``) are left unfolded, so every ``const`` stays
    finite and the program can still be written as `.vm` text.
    """
    opcodes = program.opcodes.copy()
    args = program.args.copy()
    consts = program.consts.copy()
    is_const = opcodes == CONST
    with np.errstate(all="ignore"):
        for i in range(len(opcodes)):
            op = OPS[opcodes[i]]
            if op.rule is None or not all(is_const[args[i, : op.arity]]):
                continue
            value = float(op.rule(np, *consts[args[i, : op.arity]]))
            if np.isfinite(value):
                opcodes[i], consts[i], is_const[i] = CONST, value, True
                args[i] = -1
    if np.array_equal(opcodes, program.opcodes):
        return program
    return Program(opcodes, args, consts, program.ids, program.source, program.params)


def deduplicate(program: Program, *, by_value: bool = True) -> Program:
    """Merge identical constants and instructions (common-subexpression elimination).
    ``by_value=False``: constants and atoms are never merged (only instructions with the
    same operands are), so which rows merge does not depend on the numbers."""
    n = len(program)
    target = np.arange(n)
    seen: dict[tuple[Any, ...], int] = {}
    opcodes, args = list(items(program.opcodes)), list(items(program.args))
    const_bits = list(items(program.consts.view(np.int64)))
    atom_params = iter(program.params)
    for i in range(n):
        code = opcodes[i]
        a, b = args[i]
        a = target[a] if a >= 0 else -1
        b = target[b] if b >= 0 else -1
        if OPS[code].commutative and a > b:
            a, b = b, a
        if code == CONST:
            key: tuple[Any, ...] = (code, const_bits[i] if by_value else i)
        elif OPS[code].params:
            numbers = next(atom_params)
            key = (code, numbers.tobytes() if by_value else i)
        else:
            key = (code, a, b)
        target[i] = seen.setdefault(key, i)
    keep = target == np.arange(n)
    # The value is the last row, so it stays even if it repeats an earlier one.
    keep[-1], target[-1] = True, n - 1
    if keep.all():
        return program
    # Rows that survive only point at survivors, because target was applied above.
    return _select(program, keep, target)


def eliminate_dead_code(program: Program) -> Program:
    """Drop every instruction the program's value (the last instruction) does not need."""
    n = len(program)
    live = np.zeros(n, dtype=bool)
    live[-1] = True
    args = list(items(program.args))
    for i in range(n - 1, -1, -1):
        if live[i]:
            for a in args[i]:
                if a >= 0:
                    live[a] = True
    if live.all():
        return program
    return _select(program, live, np.arange(n))


def transform_inputs(program: Program, matrix: np.ndarray) -> Program:
    """``program`` evaluated at ``matrix @ (x, y, z)``: new rows compute the three
    transformed inputs (``m[i, 0]·x + m[i, 1]·y + m[i, 2]·z``, products then sums, in that
    order), and the program's own input rows are replaced by them. Its value at ``(x, y,
    z)`` is the original's at the transformed point, rounded as those rows round it."""
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"the transform must be a finite 3 × 3 matrix, got {matrix.tolist()}")
    code = {op.name: i for i, op in enumerate(OPS)}
    ops: list[int] = []
    args: list[tuple[int, int]] = []
    consts: list[float] = []

    def row(op: str, a: int = -1, b: int = -1, c: float = 0.0) -> int:
        ops.append(code[op])
        args.append((a, b))
        consts.append(c)
        return len(ops) - 1

    params = _transformed(program.params, program.opcodes, matrix)
    inputs = [row(name) for name in ("var-x", "var-y", "var-z")]
    moved = []
    for i in range(3):
        terms = [row("mul", inputs[j], row("const", c=float(matrix[i, j]))) for j in range(3)]
        moved.append(row("add", row("add", terms[0], terms[1]), terms[2]))
    shift = len(ops)
    target = {INPUTS[k]: moved[k] for k in range(3)}
    old_args = list(items(program.args))
    for i, op in enumerate(items(program.opcodes)):
        a, b = old_args[i]
        ops.append(code["const"] if op in target else op)  # placeholder, replaced below
        args.append((a + shift if a >= 0 else -1, b + shift if b >= 0 else -1))
        consts.append(float(program.consts[i]))
    # Uses of an original input row go to its transformed value.
    redirect = {
        shift + i: target[op] for i, op in enumerate(items(program.opcodes)) if op in target
    }
    args = [(redirect.get(a, a), redirect.get(b, b)) for a, b in args]
    ids = tuple(f"_t{i}" for i in range(shift)) + program.ids
    if int(program.opcodes[-1]) in target:  # the value is an input: end on its new value
        value = target[int(program.opcodes[-1])]
        row("max", value, value)  # max(v, v) is v, exactly
        ids += (f"_t{len(ops) - 1}",)
    out = Program(
        np.array(ops, np.int32),
        np.array(args, np.int32),
        np.array(consts),
        ids,
        program.source,
        params,
    )
    return eliminate_dead_code(out)


def _transformed(params: np.ndarray, opcodes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Atoms' numbers for inputs ``matrix @ (x, y, z)``: each affine form's coefficients
    ``c`` become ``matrixᵀ c`` (its constant term stays)."""
    out = params.copy()
    kinds = opcodes[np.isin(opcodes, ATOMS)]
    for row, code in enumerate(items(kinds)):
        for k in OPS[code].forms:  # each affine form's x coefficient
            out[row, k : k + 3] = matrix.T @ params[row, k : k + 3]
    return out


def simplify(program: Program, *, by_value: bool = True) -> Program:
    """Constant folding, then deduplication (``by_value`` as :func:`deduplicate` takes
    it), then dead-code elimination."""
    return eliminate_dead_code(deduplicate(fold_constants(program), by_value=by_value))


_EXTREMA = (OPCODE["min"], OPCODE["max"])


def balance_extrema(program: Program) -> Program:
    """Rebuild every tree of one extremum op (``min`` or ``max`` rows each used once, by a
    row of the same op) whose depth is not the least its arguments allow: the two
    shallowest arguments are joined first (Huffman's rule, for depth), so a chain of
    ``n`` equally deep arguments becomes a tree of depth ``ceil(log2 n)``.

    Exact (see the module docstring), with as many rows as before (a rebuilt tree's rows
    keep the old rows' IDs, in order); other rows keep their order, and the result is the
    last row still. Idempotent: a tree already as shallow as it can be is kept as it is.
    """
    n = len(program)
    ops, args = list(items(program.opcodes)), list(items(program.args))
    inner, user = _extremum_trees(ops, args)
    if not any(inner):
        return program
    # Which trees to rebuild, in tape order: a tree's arguments are final before it.
    height = [0] * n  # each row's depth in the result (inner rows: as they stand)
    rebuild = [False] * n
    for i in range(n):
        a, b = args[i]
        below = [height[k] for k in (a, b) if k >= 0]
        height[i] = 1 + max(below, default=0)
        if ops[i] in _EXTREMA and not inner[i] and (inner[a] or inner[b]):
            leaves = [k for r in [*_inner_rows(i, args, inner), i] for k in args[r] if not inner[k]]
            least = _huffman_depth([height[k] for k in leaves])
            rebuild[i] = height[i] > least
            height[i] = min(height[i], least)
    root = list(range(n))
    for i in range(n - 1, -1, -1):
        if inner[i]:
            root[i] = root[user[i]]

    consts = list(items(program.consts))
    new_ops: list[int] = []
    new_args: list[tuple[int, int]] = []
    new_consts: list[float] = []
    ids: list[str] = []
    depth: list[int] = []  # of each new row
    where = [-1] * n  # old row -> new row

    def emit(code: int, a: int, b: int, c: float, name: str) -> int:
        new_ops.append(code)
        new_args.append((a, b))
        new_consts.append(c)
        ids.append(name)
        depth.append(1 + max(depth[a] if a >= 0 else 0, depth[b] if b >= 0 else 0))
        return len(new_ops) - 1

    for i in range(n):
        if not rebuild[root[i]]:
            a, b = args[i]
            where[i] = emit(ops[i], where[a] if a >= 0 else -1, where[b] if b >= 0 else -1,
                            consts[i], program.ids[i])  # fmt: skip
            continue
        if inner[i]:
            continue  # emitted with its tree's root
        rows = _inner_rows(i, args, inner)
        leaves = [where[k] for r in [*rows, i] for k in args[r] if not inner[k]]
        names = iter([program.ids[r] for r in rows] + [program.ids[i]])
        pair = lambda a, b, o=ops[i], n=names: emit(o, a, b, 0.0, next(n))  # noqa: E731
        where[i] = _join(leaves, depth, pair)
    if new_ops == ops and new_args == [tuple(a) for a in args]:
        return program
    return Program(
        np.array(new_ops, np.int32), np.array(new_args, np.int32).reshape(-1, 2),
        np.array(new_consts), tuple(ids), program.source, program.params,
    )  # fmt: skip


def _extremum_trees(ops: list[int], args: list[list[int]]) -> tuple[list[bool], list[int]]:
    """Which rows are inner rows of a tree of one extremum op (``min`` or ``max`` rows each
    used once, by a row of the same op; the last row never is), and each row's user."""
    n = len(ops)
    user = [-1] * n
    uses = [0] * n
    for i, (a, b) in enumerate(args):
        for k in (a, b):
            if k >= 0:
                uses[k] += 1
                user[k] = i
    inner = [
        ops[i] in _EXTREMA and uses[i] == 1 and i != n - 1 and ops[user[i]] == ops[i]
        for i in range(n)
    ]
    return inner, user


#: The atom that takes the extremum of up to four affine forms, by extremum op.
_HULL = {OPCODE["max"]: AFFINE_MAX, OPCODE["min"]: AFFINE_MIN}


def fold_hulls(program: Program) -> Program:
    """Each tree of one extremum op (as :func:`balance_extrema` finds them) with two or
    more ``affine`` arguments: those arguments taken four at a time into ``affine-max``
    (under ``max``) or ``affine-min`` (under ``min``) atoms, a group of fewer repeating
    its first form (one ``affine`` left over stays as it is); the atoms and the tree's
    other arguments joined again by a tree of least depth (Huffman's rule).

    Exact: each form is computed as its ``affine`` row computed it, and the extremum of
    several is the tree's (module docstring). Rows no longer used are dropped, atoms made
    alike merged; the new rows take the IDs of the tree rows they replace (never more of
    them). Idempotent: a tree with at most one distinct ``affine`` argument (rows alike
    counted once) is kept as it is; folding repeats until none is left (dropping a tree's
    rows can leave another tree with more arguments).
    """
    out = _fold_hulls_once(program)
    while out is not program:
        program, out = out, _fold_hulls_once(out)
    return out


def _fold_hulls_once(program: Program) -> Program:
    """One pass of :func:`fold_hulls` (``program`` itself if no tree has two distinct
    ``affine`` arguments)."""
    # Rows alike become one row, so a tree's affine arguments are distinct rows.
    original, program = program, deduplicate(program)
    n = len(program)
    ops, args = list(items(program.opcodes)), list(items(program.args))
    inner, _ = _extremum_trees(ops, args)
    atom_rows = np.flatnonzero(np.isin(program.opcodes, ATOMS))
    numbers = dict(zip(items(atom_rows), program.params, strict=True))
    consts = list(items(program.consts))
    new_ops: list[int] = []
    new_args: list[tuple[int, int]] = []
    new_consts: list[float] = []
    new_params: list[np.ndarray] = []
    ids: list[str] = []
    depth: list[int] = []
    where = [-1] * n  # old row -> new row

    def emit(code: int, a: int, b: int, c: float, name: str, p: np.ndarray | None = None) -> int:
        new_ops.append(code)
        new_args.append((a, b))
        new_consts.append(c)
        ids.append(name)
        if p is not None:
            new_params.append(p)
        depth.append(1 + max(depth[a] if a >= 0 else 0, depth[b] if b >= 0 else 0))
        return len(new_ops) - 1

    folded = False
    for i in range(n):
        if inner[i]:
            continue  # emitted with its tree's root
        extremum = ops[i] in _EXTREMA
        rows = _inner_rows(i, args, inner) if extremum else []
        leaves = [k for r in [*rows, i] for k in args[r] if not inner[k]] if extremum else []
        lines = [k for k in dict.fromkeys(leaves) if ops[k] == AFFINE]
        if len(lines) < 2:
            for r in sorted([*rows, i]):  # the tree (or row) as it stands
                a, b = args[r]
                where[r] = emit(ops[r], where[a] if a >= 0 else -1, where[b] if b >= 0 else -1,
                                consts[r], program.ids[r], numbers.get(r))  # fmt: skip
            continue
        folded = True
        names = iter([program.ids[r] for r in rows] + [program.ids[i]])
        parts = [where[k] for k in leaves if ops[k] != AFFINE]  # an affine twice: once
        forms = len(HULL_FORMS)
        for group in (lines[k : k + forms] for k in range(0, len(lines), forms)):
            if len(group) == 1:
                parts.append(where[group[0]])
                continue
            p = np.zeros(PARAMS)
            for slot, start in enumerate(HULL_FORMS):  # a form: a, b, c, d (an affine's)
                p[start : start + 4] = numbers[group[slot] if slot < len(group) else group[0]][:4]
            parts.append(emit(_HULL[ops[i]], -1, -1, 0.0, next(names), p))
        pair = lambda a, b, o=ops[i], n=names: emit(o, a, b, 0.0, next(n))  # noqa: E731
        where[i] = _join(parts, depth, pair)
    if not folded:
        return original
    assert where[n - 1] == len(new_ops) - 1  # the value is the last row still
    out = Program(
        np.array(new_ops, np.int32), np.array(new_args, np.int32).reshape(-1, 2),
        np.array(new_consts), tuple(ids), program.source,
        np.array(new_params).reshape(-1, PARAMS),
    )  # fmt: skip
    return deduplicate(eliminate_dead_code(out))  # two trees may make the same atom


def _join(parts: list[int], depth: list[int], join: Callable[[int, int], int]) -> int:
    """The row joining rows ``parts`` by a tree of least depth: the two shallowest first
    (Huffman's rule; ties in ``parts``' order), each pair by ``join(a, b)`` (``a < b``),
    which emits the row and records its depth in ``depth``."""
    heap = [(depth[k], order, k) for order, k in enumerate(parts)]
    heapq.heapify(heap)
    order = len(parts)
    while len(heap) > 1:
        (_, _, a), (_, _, b) = heapq.heappop(heap), heapq.heappop(heap)
        row = join(min(a, b), max(a, b))
        heapq.heappush(heap, (depth[row], order, row))
        order += 1
    return heap[0][2]


def _huffman_depth(depths: list[int]) -> int:
    """The least depth of a binary tree over leaves of these depths."""
    heap = list(depths)
    heapq.heapify(heap)
    while len(heap) > 1:
        heapq.heappush(heap, 1 + max(heapq.heappop(heap), heapq.heappop(heap)))
    return heap[0]


def _inner_rows(root: int, args: list[list[int]], inner: list[bool]) -> list[int]:
    """The inner rows of the tree under ``root``, in tape order."""
    out, stack = [], [root]
    while stack:
        k = stack.pop()
        for a in args[k]:
            if a >= 0 and inner[a]:
                out.append(a)
                stack.append(a)
    return sorted(out)


def _death_times(program: Program) -> np.ndarray:
    """``death[v]``: the step after which value ``v`` is no longer needed.

    That is its last user's index; its own index if nothing uses it (dead code); and the
    tape's length for the root, which is never freed.
    """
    n = len(program)
    death = np.arange(n, dtype=np.int64)
    for i, (a, b) in enumerate(items(program.args)):
        if a >= 0:
            death[a] = i
        if b >= 0:
            death[b] = i
    death[-1] = n
    return death


def last_uses(program: Program) -> list[list[int]]:
    """``frees[i]``: the values to drop right after computing instruction ``i``.

    An evaluator that drops ``frees[i]`` after each step keeps only live values,
    :func:`max_live` of them at most. The root (last instruction) is never in it.
    """
    frees: list[list[int]] = [[] for _ in range(len(program))]
    for value, step in enumerate(items(_death_times(program))):
        if step < len(program):
            frees[step].append(value)
    return frees


def max_live(program: Program) -> int:
    """Most values alive at once when evaluating in order and freeing after last use."""
    n = len(program)
    freed_at = np.bincount(_death_times(program), minlength=n + 1)[:n]
    alive_after = np.cumsum(1 - freed_at)  # values alive after each step
    return int(np.max(alive_after + freed_at))  # ... and during it, before the frees


def allocate_registers(program: Program) -> tuple[np.ndarray, int]:
    """``(slots, count)``: the register that holds each instruction's value, and how many.

    Linear scan in tape order: a register is free again right after its value's last use,
    so an instruction may reuse the register of an operand it is the last user of (an
    evaluator reads the operands before it writes the result). ``count <= max_live``.
    The lowest free register is taken first, so the allocation is deterministic.
    """
    n = len(program)
    death = _death_times(program)
    slots = np.empty(n, dtype=np.int32)
    free: list[int] = []
    count = 0
    for i, (a, b) in enumerate(items(program.args)):
        for v in {a, b} - {-1}:
            if death[v] == i:
                heapq.heappush(free, int(slots[v]))
        if free:
            slots[i] = heapq.heappop(free)
        else:
            slots[i], count = count, count + 1
        if death[i] == i:  # never used: its register is free at once
            heapq.heappush(free, int(slots[i]))
    return slots, count


def depth(program: Program) -> int:
    """Longest chain of instructions from an input or constant to the value (inputs: 1)."""
    level = np.zeros(len(program), dtype=np.int64)
    for i, (a, b) in enumerate(items(program.args)):
        level[i] = 1 + max(level[a] if a >= 0 else 0, level[b] if b >= 0 else 0)
    return int(level[-1])


@functools.lru_cache(maxsize=64)
def dimensions(program: Program) -> int:
    """3 when the program's value depends on ``var-z`` (a solid: heightmaps and meshes),
    else 2 (read after constant folding and dead code elimination; cached: every render
    of a solid asks, and simplifying colonnade costs ~4 ms)."""
    return 3 if np.any(simplify(program).opcodes == VAR_Z) else 2


def describe(program: Program) -> dict[str, Any]:
    """Facts about a program, as plain data: sizes, inputs and dimensions, opcode
    histogram, constants, liveness."""
    consts = program.consts[program.opcodes == CONST]
    simple = simplify(program)
    inputs = [OPS[c].name for c in INPUTS if np.any(program.opcodes == c)]
    used = [OPS[c].name for c in INPUTS if np.any(simple.opcodes == c)]
    return {
        "source": program.source,
        "instructions": len(program),
        "inputs": inputs,
        "dimensions": 3 if "var-z" in used else 2,  # as dimensions(program)
        "histogram": program.histogram(),
        "constants": {
            "count": int(consts.size),
            "distinct": int(np.unique(consts).size),
            "min": float(consts.min()) if consts.size else None,
            "max": float(consts.max()) if consts.size else None,
        },
        "depth": depth(program),
        "max_live": max_live(program),
        "simplified": {
            "instructions": len(simple),
            "non_constant": int(np.sum(simple.opcodes != CONST)),
            "max_live": max_live(simple),
        },
        "digest": program.digest,
    }
