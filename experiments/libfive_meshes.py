"""Meshes, side by side with libfive's dual-contouring mesher, alternated process by process.

    ../shared/peers/libfive/build.sh LIBFIVE_SOURCE_DIR /tmp/libfive-build   # once, outside
    python experiments/libfive_meshes.py --libfive /tmp/libfive-build/vm_bench \\
        --models bear,colonnade,tanglecube,sphere,boxes --sizes 256,512 --rounds 3

Each round runs, for every model and size, libfive's ``vm_bench MODEL mesh N 1 HALF R``
(``Mesh::render`` over ``[-HALF, HALF]³`` with ``min_feature = 2 HALF / N``, one thread,
its default ``max_err``: the median of R meshes after parsing) and then a fresh process of
ours timing ``pj.mesh(program, N, bounds=(-HALF, HALF), method=M)`` for each method ``M``
(float32, the median of R steady meshes after a first one that compiles or loads), with
glibc keeping freed arrays for reuse as the CLI does (``pj.reuse_freed_memory()``; with
``--allocators cli,default`` also a process without it, columns ``METHOD/default``). The
table gives the median over rounds of each side's median, the min–max over rounds, the
face counts, and ours ÷ libfive. Bounds: bear ±1.5, tanglecube ±3, the others ±1;
``sphere`` is ``sqrt(x² + y² + z²) - 0.6`` and ``boxes`` the union of two boxes of the
mesh tests, written to a temporary file. Both sides run on one core (``taskset -c 0``;
``--two-cores``: ours on both, as every run before session 26; libfive_peer.ONE_CORE).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from libfive_peer import HALF, ONE_CORE, libfive_run, model_path, run_json

WORKER = """
import json, statistics, sys, time, warnings
import prospero_jax as pj
warnings.simplefilter("ignore")
model, size, repeats, half = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if sys.argv[6] == "cli":
    pj.reuse_freed_memory()
program, out = pj.load(model), {}
for method in sys.argv[5].split(","):
    run = lambda: pj.mesh(program, size, bounds=(-half, half), method=method)
    started = time.perf_counter(); first = run(); first_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter(); run(); times.append(time.perf_counter() - started)
    out[method] = {"first_s": first_s, "median_s": statistics.median(times),
                   "faces": len(first.faces)}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libfive", type=Path, default=Path("/tmp/libfive-build/vm_bench"))
    parser.add_argument("--models", default="bear,colonnade,tanglecube,sphere,boxes")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--methods", default="dual,cubes")
    parser.add_argument("--allocators", default="cli", help="cli (freed arrays reused), default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--two-cores", action="store_true", help="let ours use both cores (before session 26)"
    )
    args = parser.parse_args()
    pin = [] if args.two_cores else ONE_CORE
    if not args.libfive.exists():
        sys.exit(f"{args.libfive}: no vm_bench; build it with ../shared/peers/libfive/build.sh")
    models, sizes = args.models.split(","), [int(n) for n in args.sizes.split(",")]
    if unknown := set(args.allocators.split(",")) - {"cli", "default"}:
        parser.error(f"--allocators: {', '.join(sorted(unknown))}: not cli or default")
    methods, allocators = args.methods.split(","), args.allocators.split(",")
    columns = [m if a == "cli" else f"{m}/{a}" for a in allocators for m in methods]
    times: dict[tuple[str, int, str], list[float]] = {}
    faces: dict[tuple[str, int, str], int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name in models:
                path, half = model_path(name, Path(scratch)), HALF.get(name, 1.0)
                for n in sizes:
                    theirs = libfive_run(args.libfive, path, "mesh", n, half, args.repeats, pin)
                    mine_of: dict[str, object] = {}
                    for allocator in allocators:
                        got = run_json(
                            [*pin, sys.executable, "-c", WORKER, str(path), str(n),
                             str(args.repeats), str(half), ",".join(methods), allocator]
                        )  # fmt: skip
                        suffix = "" if allocator == "cli" else f"/{allocator}"
                        mine_of |= {f"{method}{suffix}": got[method] for method in methods}
                    times.setdefault((name, n, "libfive"), []).append(float(theirs["median_s"]))  # type: ignore[arg-type]
                    faces[(name, n, "libfive")] = int(theirs["faces"])  # type: ignore[call-overload]
                    line = f"round {round_ + 1}: {name} {n}: libfive {theirs['median_s']:.3f} s"
                    for method in columns:
                        mine = mine_of[method]
                        assert isinstance(mine, dict)
                        times.setdefault((name, n, method), []).append(mine["median_s"])
                        faces[(name, n, method)] = mine["faces"]
                        line += f", {method} {mine['median_s']:.3f} s (first {mine['first_s']:.2f})"
                    print(line, flush=True)
    head = " | ".join(f"{m} (s) | {m} ÷ libfive | {m} faces" for m in columns)
    print(f"\n| model | N | libfive, 1 thread (s) | libfive faces | {head} |")
    print("|---|---|---|---|" + "---|---|---|" * len(columns))
    for name in models:
        for n in sizes:
            peer = times[(name, n, "libfive")]
            row = (
                f"| {name} | {n} | {statistics.median(peer):.3f} "
                f"[{min(peer):.3f}–{max(peer):.3f}] | {faces[(name, n, 'libfive')]:,} "
            )
            for method in columns:
                ours = times[(name, n, method)]
                ratio = statistics.median(ours) / statistics.median(peer)
                row += (
                    f"| {statistics.median(ours):.3f} [{min(ours):.3f}–{max(ours):.3f}] "
                    f"| {ratio:.2f} | {faces[(name, n, method)]:,} "
                )
            print(row + "|")


if __name__ == "__main__":
    main()
