"""Heightmaps with normals, side by side with libfive's, alternated process by process.

    ../shared/peers/libfive/build.sh LIBFIVE_SOURCE_DIR /tmp/libfive-build   # once, outside
    python experiments/libfive_heightmaps.py --libfive /tmp/libfive-build/vm_bench \\
        --models bear,colonnade,tanglecube,sphere --sizes 256,512 --rounds 3

Each round runs, for every model and size, libfive's ``vm_bench MODEL hm N 1 HALF R`` (one
thread, the median of R renders after parsing) and then a fresh process of ours timing
``pj.render_heightmap(program, N, region=±HALF, normals=True)`` (depth ``D = N``, float32,
the default mode: the median of R steady renders after a first one that compiles or
loads). The table gives the median over rounds of each side's median, the min–max over
rounds, and ours ÷ libfive; with ``--before TREE`` each round also times ours from another
checkout (e.g. ``git worktree add /tmp/before COMMIT``), right after this tree's. Regions
as in ``../shared/peers/README.md``: bear ±1.5, tanglecube ±3, the others ±1; ``sphere``
is ``sqrt(x² + y² + z²) - 0.6``, written to a temporary file. libfive samples voxel
centres in z and always computes normals.
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="also time ours from another checkout")
    args = parser.parse_args()
    if not args.libfive.exists():
        sys.exit(f"{args.libfive}: no vm_bench; build it with ../shared/peers/libfive/build.sh")
    models, sizes = args.models.split(","), [int(n) for n in args.sizes.split(",")]
    times: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name in models:
                path, half = model_path(name, Path(scratch)), HALF.get(name, 1.0)
                for n in sizes:
                    theirs = libfive_run(args.libfive, path, "hm", n, half, args.repeats)
                    ours = run_json(
                        [sys.executable, "-c", WORKER, str(path), str(n), str(args.repeats),
                         str(half)]
                    )  # fmt: skip
                    times.setdefault((name, n, "libfive"), []).append(float(theirs["median_s"]))  # type: ignore[arg-type]
                    times.setdefault((name, n, "ours"), []).append(float(ours["median_s"]))  # type: ignore[arg-type]
                    if args.before:
                        before = run_json(
                            [sys.executable, "-c", WORKER, str(path), str(n), str(args.repeats),
                             str(half)],
                            tree=args.before,
                        )  # fmt: skip
                        times.setdefault((name, n, "before"), []).append(float(before["median_s"]))  # type: ignore[arg-type]
                        print(f"round {round_ + 1}: {name} {n}: before {before['median_s']:.3f} s")
                    print(
                        f"round {round_ + 1}: {name} {n}: libfive {theirs['median_s']:.3f} s, "
                        f"ours {ours['median_s']:.3f} s (first {ours['first_s']:.2f} s; "
                        f"solid {theirs['solid']:.3f} / {ours['solid']:.3f})",
                        flush=True,
                    )
    extra = " before (s) | before ÷ libfive |" if args.before else ""
    print(f"\n| model | N | libfive, 1 thread (s) | prospero-jax (s) | ours ÷ libfive |{extra}")
    print("|---|---|---|---|---|" + ("---|---|" if args.before else ""))
    for name in models:
        for n in sizes:
            peer, ours = times[(name, n, "libfive")], times[(name, n, "ours")]
            ratio = statistics.median(ours) / statistics.median(peer)
            row = (
                f"| {name} | {n} | {statistics.median(peer):.3f} [{min(peer):.3f}–{max(peer):.3f}] "
                f"| {statistics.median(ours):.3f} [{min(ours):.3f}–{max(ours):.3f}] "
                f"| {ratio:.2f} |"
            )
            if args.before:
                old = times[(name, n, "before")]
                row += (
                    f" {statistics.median(old):.3f} [{min(old):.3f}–{max(old):.3f}] "
                    f"| {statistics.median(old) / statistics.median(peer):.2f} |"
                )
            print(row)


if __name__ == "__main__":
    main()
