"""Where a heightmap's time goes on the octree: one row per level, and the leaves.

    python experiments/octree_levels.py --models bear,colonnade,tanglecube,sphere --size 512
    python experiments/octree_levels.py --models tanglecube --leaf 16 --thick 32   # shapes

For each model (regions as in libfive_heightmaps.py; depth = size), the sign program's
first-inside search (:func:`prospero_jax.renderers.octree.first_inside`, normals not
included; compiled leaves evaluate the program as written, as ``render_heightmap`` has
them): per level the box it splits into (pixels × samples), the boxes in, their tape
rows, children proved inside, children left, and the median wall time over ``--repeats``
(after a warm-up that compiles).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

import prospero_jax as pj
from prospero_jax.renderers import octree
from prospero_jax.renderers.heightmap import depths
from prospero_jax.renderers.hierarchy import root_side
from prospero_jax.renderers.render import drawn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from libfive_peer import HALF, MODELS, SPHERE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bear,colonnade,tanglecube,sphere")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--leaf", type=int, default=octree.LEAF, help="leaf box side (px)")
    parser.add_argument("--thick", type=int, default=octree.THICK, help="leaf box samples")
    parser.add_argument(
        "--layered-rows", type=int, default=octree.LAYERED_ROWS, help="see octree.LAYERED_ROWS"
    )
    parser.add_argument(
        "--thin-rows", type=int, default=octree.THIN_ROWS, help="see octree.THIN_ROWS (-1: never)"
    )
    args = parser.parse_args()
    octree.LEAF, octree.THICK, octree.LAYERED_ROWS = args.leaf, args.thick, args.layered_rows
    octree.THIN_ROWS = args.thin_rows
    n, target = args.size, pj.Target()
    for name in args.models.split(","):
        program = pj.parse(SPHERE) if name == "sphere" else pj.load(MODELS / f"{name}.vm")
        half = HALF.get(name, 1.0)
        xs, ys = pj.View(n, (-half, half, -half, half)).axes()
        side, samples = root_side(n, octree.LEAF), root_side(n, octree.THICK)
        xs = np.pad(xs, (0, side - n), mode="edge").astype(target.dtype)
        ys = np.pad(ys, (0, side - n), mode="edge").astype(target.dtype)
        zs = np.pad(depths(n).astype(target.dtype), (0, samples - n), mode="edge")
        sign = drawn(program, target, True)
        runs: list[list[dict[str, Any]]] = []
        for _ in range(args.repeats + 1):
            first = np.full((side, side), octree.FAR, np.int64)
            first[n:, :] = first[:, n:] = -1
            stats: list[dict[str, Any]] = []
            with target.precision():
                octree.first_inside(
                    sign, xs, ys, zs, target, first, leaf=args.leaf, points=program, stats=stats
                )
            runs.append(stats)
        runs = runs[1:]
        total = statistics.median(sum(s["seconds"] for s in run) for run in runs) * 1e3
        print(f"\n{name}, {n}² × {n}, median of {args.repeats}: {total:.0f} ms")
        print("| box | boxes in | rows | inside | left | ms |")
        print("|---|---|---|---|---|---|")
        for level, row in enumerate(runs[0]):
            ms = statistics.median(run[level]["seconds"] for run in runs) * 1e3
            print(
                f"| {row['box']} | {row['boxes']:,} | {row['rows']:,} | {row['inside']} "
                f"| {row['ambiguous']:,} | {ms:.1f} |"
            )


if __name__ == "__main__":
    main()
