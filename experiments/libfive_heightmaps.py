"""Heightmaps with normals, side by side with libfive's, alternated process by process.

    ../shared/peers/libfive/build.sh LIBFIVE_SOURCE_DIR /tmp/libfive-build   # once, outside
    python experiments/libfive_heightmaps.py --libfive /tmp/libfive-build/vm_bench \\
        --models bear,colonnade,tanglecube,sphere --sizes 256,512 --rounds 3

Each round runs, for every model and size, libfive's ``vm_bench MODEL hm N 1 HALF R`` (one
thread, the median of R renders after parsing) and then a fresh process of ours timing
``pj.render_heightmap(program, N, region=±HALF, normals=True)`` (depth ``D = N``, float32,
the default mode: the median of R steady renders after a first one that compiles or
loads), with glibc keeping freed arrays for reuse as the CLI does
(``pj.reuse_freed_memory()``; with ``--allocators cli,default`` also a process without it,
column ``ours/default``: a library user's call who has not asked for it). The table gives
the median over rounds of each side's median, the min–max over rounds, and ours ÷
libfive; with ``--before TREE`` each round also times ours from another checkout (e.g.
``git worktree add /tmp/before COMMIT``), right after this tree's, with the same
allocators. Regions as in ``../shared/peers/README.md``: bear ±1.5, tanglecube ±3, the
others ±1; ``sphere`` is ``sqrt(x² + y² + z²) - 0.6``, written to a temporary file.
libfive samples voxel centres in z and always computes normals.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from libfive_peer import HALF, libfive_run, model_path, run_json

WORKER = """
import json, statistics, sys, time
import numpy as np
import prospero_jax as pj
model, size, repeats, half = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if sys.argv[5] == "cli":
    pj.reuse_freed_memory()
program = pj.load(model)
region = (-half, half, -half, half)
run = lambda: pj.render_heightmap(program, size, region=region, normals=True)
started = time.perf_counter(); first = run(); first_s = time.perf_counter() - started
times = []
for _ in range(repeats):
    started = time.perf_counter(); run(); times.append(time.perf_counter() - started)
print(json.dumps({"first_s": first_s, "median_s": statistics.median(times),
                  "solid": float(np.isfinite(first.z).mean())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libfive", type=Path, default=Path("/tmp/libfive-build/vm_bench"))
    parser.add_argument("--models", default="bear,colonnade,tanglecube,sphere")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--allocators", default="cli", help="cli (freed arrays reused), default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="also time ours from another checkout")
    args = parser.parse_args()
    if not args.libfive.exists():
        sys.exit(f"{args.libfive}: no vm_bench; build it with ../shared/peers/libfive/build.sh")
    if unknown := set(args.allocators.split(",")) - {"cli", "default"}:
        parser.error(f"--allocators: {', '.join(sorted(unknown))}: not cli or default")
    models, sizes = args.models.split(","), [int(n) for n in args.sizes.split(",")]
    trees = {"ours": None} | ({"before": args.before} if args.before else {})
    columns = [
        (name if allocator == "cli" else f"{name}/{allocator}", tree, allocator)
        for name, tree in trees.items()
        for allocator in args.allocators.split(",")
    ]
    times: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name in models:
                path, half = model_path(name, Path(scratch)), HALF.get(name, 1.0)
                for n in sizes:
                    theirs = libfive_run(args.libfive, path, "hm", n, half, args.repeats)
                    times.setdefault((name, n, "libfive"), []).append(float(theirs["median_s"]))  # type: ignore[arg-type]
                    line = f"round {round_ + 1}: {name} {n}: libfive {theirs['median_s']:.3f} s"
                    for column, tree, allocator in columns:
                        got = run_json(
                            [sys.executable, "-c", WORKER, str(path), str(n), str(args.repeats),
                             str(half), allocator],
                            tree=tree,
                        )  # fmt: skip
                        times.setdefault((name, n, column), []).append(float(got["median_s"]))  # type: ignore[arg-type]
                        line += (
                            f", {column} {got['median_s']:.3f} s (first {got['first_s']:.2f} s; "
                            f"solid {theirs['solid']:.3f} / {got['solid']:.3f})"
                        )
                    print(line, flush=True)
    head = " | ".join(f"{c} (s) | {c} ÷ libfive" for c, _, _ in columns)
    print(f"\n| model | N | libfive, 1 thread (s) | {head} |")
    print("|---|---|---|" + "---|---|" * len(columns))
    for name in models:
        for n in sizes:
            peer = times[(name, n, "libfive")]
            spread = f"[{min(peer):.3f}–{max(peer):.3f}]"
            row = f"| {name} | {n} | {statistics.median(peer):.3f} {spread} "
            for column, _, _ in columns:
                ours = times[(name, n, column)]
                ratio = statistics.median(ours) / statistics.median(peer)
                row += (
                    f"| {statistics.median(ours):.3f} [{min(ours):.3f}–{max(ours):.3f}] "
                    f"| {ratio:.2f} "
                )
            print(row + "|")


if __name__ == "__main__":
    main()
