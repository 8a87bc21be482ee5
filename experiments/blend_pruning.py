"""What pruning smooth blends would buy: rows left per leaf box, min/max pruning alone
against min/max plus blends decided by intervals (a measurement, nothing built on it).

    python experiments/blend_pruning.py --model bear --half 1.5 --size 256

A smooth blend is ``ln(exp(u) + exp(v))`` (the bear's eight ``-ln(exp(-k a) + exp(-k b))/k``
unions). Interval pruning cannot drop either side of an ``add``, so a leaf box of the bear
keeps most of its program. Where the intervals prove ``u ≤ v - T``, the blend is ``v`` to
within ``ln(1 + e^-T) ≤ e^-T`` (``T = 17``: under float32's 2^-24 relative rounding; ``T =
104``: ``e^-T`` underflows float32 to 0, so the rewritten row is the float32 value bit for
bit), and ``u``'s subtree is dead there. For the octree's leaf boxes at ``--size`` (8 × 8
pixels × 16 samples over ``[-half, half]³``) whose root interval holds 0, each row's
interval (the op table's rules, float64, NumPy), then the rows live from the root: with
``min``/``max`` decided by their ``choose`` rule (what the pruner does today), and with the
blends decided too. Prints the distribution of rows a box.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import prospero_jax as pj
from prospero_jax.ir.ops import OPCODE, OPS, interval_step

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def intervals(program: pj.Program, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every row's interval over each box (``lo``, ``hi``: ``(boxes, 3)``): ``(rows, boxes)``
    lower and upper bounds."""
    n, boxes = len(program.opcodes), len(lo)
    low, high = np.empty((n, boxes)), np.empty((n, boxes))
    var = {OPCODE["var-x"]: 0, OPCODE["var-y"]: 1, OPCODE["var-z"]: 2}
    for i, (code, (a, b)) in enumerate(zip(program.opcodes, program.args, strict=True)):
        op = OPS[code]
        if code in var:
            low[i], high[i] = lo[:, var[code]], hi[:, var[code]]
        elif op.name == "const":
            low[i] = high[i] = program.consts[i]
        else:
            args = [(low[a], high[a])] + ([(low[b], high[b])] if op.arity == 2 else [])
            low[i], high[i] = interval_step(op, np, *args)
    return low, high


def live_rows(
    program: pj.Program, low: np.ndarray, high: np.ndarray, gap: float | None
) -> np.ndarray:
    """Rows live from the root in each box, ``min``/``max`` decided by intervals, and
    blends ``ln(exp(u) + exp(v))`` where ``u`` lies ``gap`` below ``v`` (or the reverse;
    ``None``: blends kept whole)."""
    opcodes, args = program.opcodes, program.args
    n, boxes = low.shape
    live = np.zeros((n, boxes), bool)
    live[n - 1] = True
    codes = {name: OPCODE[name] for name in ("min", "max", "ln", "add", "exp")}
    for i in range(n - 1, -1, -1):
        here = live[i]
        if not here.any():
            continue
        op = OPS[opcodes[i]]
        a, b = args[i]
        if op.arity == 0:
            continue
        if op.arity == 1:
            s = opcodes[a] == codes["add"]
            if gap is not None and opcodes[i] == codes["ln"] and s:
                p, q = args[a]
                if opcodes[p] == codes["exp"] and opcodes[q] == codes["exp"]:
                    u, v = args[p][0], args[q][0]
                    only_v = high[u] < low[v] - gap
                    only_u = high[v] < low[u] - gap
                    live[v] |= here & only_v
                    live[u] |= here & only_u
                    live[a] |= here & ~only_u & ~only_v
                    continue
            live[a] |= here
            continue
        if opcodes[i] in (codes["min"], codes["max"]):
            choice = op.choose(np, (low[a], high[a]), (low[b], high[b]))
            live[a] |= here & (choice != 2)
            live[b] |= here & (choice != 1)
        else:
            live[a] |= here
            live[b] |= here
    counted: np.ndarray = live.sum(axis=0)
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bear")
    parser.add_argument("--half", type=float, default=1.5)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    program = pj.load(SHARED / "models" / f"{args.model}.vm")
    side, depth = 8, 16  # the octree's leaf box: pixels a side, samples deep
    step = 2 * args.half / args.size
    shape = np.array([side, side, depth])
    axes = [np.arange(args.size // s) * s * step - args.half for s in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    lo, hi = grid, grid + shape * step
    low, high = intervals(program, lo, hi)
    ambiguous = (low[-1] <= 0) & (high[-1] >= 0)
    low, high = low[:, ambiguous], high[:, ambiguous]
    print(f"{args.model}: {len(program.opcodes)} rows; {ambiguous.sum()} of {len(grid)} leaf "
          f"boxes ({side}×{side} px × {depth} samples at {args.size}) hold 0")  # fmt: skip
    print("| pruning | median rows a box | mean | max | min |")
    print("|---|---|---|---|---|")
    ways = {"min/max (today)": None, "+ blends, T = 104": 104.0, "+ blends, T = 17": 17.0}
    for name, gap in ways.items():
        rows = live_rows(program, low, high, gap)
        median, mean = np.median(rows), rows.mean()
        print(f"| {name} | {median:.0f} | {mean:.0f} | {rows.max()} | {rows.min()} |")


if __name__ == "__main__":
    main()
