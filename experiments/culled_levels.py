"""Where the culled renderer's time goes: one row per level of the tile hierarchy.

    python experiments/culled_levels.py --size 1024 --leaf 32 --repeats 5 [--exact] [--tier host]

For each level: the tile side its children have, how many tapes (ambiguous parents) and
rows it interprets, how many children it paints inside or leaves ambiguous, and the
median wall time over the repeats (after one warm-up render that compiles).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import prospero_jax as pj
from prospero_jax.renderers.culled import render_culled

PROGRAM = Path(__file__).resolve().parent.parent.parent / "shared" / "prospero.vm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", type=Path, default=PROGRAM)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--leaf", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--split", default="4,4", help="the root's split, then every other level's (k: k × k)"
    )
    parser.add_argument(
        "--exact", action="store_true", help="the program as it is, not its sign program"
    )
    parser.add_argument("--tier", default="kernels", help="auto, host or kernels (hierarchy.tier)")
    args = parser.parse_args()
    program = pj.load(args.program)
    if not args.exact:
        from prospero_jax.ir.specialise import specialise

        program = specialise(program)
    runs: list[list[dict[str, Any]]] = []
    for _ in range(args.repeats + 1):
        stats: list[dict[str, Any]] = []
        split = tuple(int(k) for k in args.split.split(","))
        render_culled(
            program,
            pj.View(args.size),
            pj.Target(tier=args.tier),
            leaf=args.leaf,
            split=split,
            stats=stats,
        )
        runs.append(stats)
    runs = runs[1:]
    print(
        f"{args.program.name} ({'exact' if args.exact else 'sign program'}), {args.size}², "
        f"leaf {args.leaf} px, split {args.split}, "
        f"median of {args.repeats}\n"
    )
    print("| children | tapes | rows | inside | ambiguous | ms |")
    print("|---|---|---|---|---|---|")
    for level in range(len(runs[0])):
        row = runs[0][level]
        ms = statistics.median(run[level]["seconds"] for run in runs) * 1e3
        tile = f"{row['tile']} px" if row["tile"] != "pixels" else "pixels"
        print(
            f"| {tile} | {row['tapes']} | {row['rows']} | {row['inside']} "
            f"| {row['ambiguous']} | {ms:.1f} |"
        )
    total = statistics.median(sum(s["seconds"] for s in run) for run in runs) * 1e3
    print(f"\nlevels total: {total:.1f} ms")


if __name__ == "__main__":
    main()
