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
libfive samples voxel centres in z and always computes normals. Both sides run on one
core (``taskset -c 0``; ``--two-cores``: ours on both, as every run before session 26):
our process has threads beyond Python's, which gave the bear 1.39 cores.

With ``--paired`` (for a noisy machine, where the rounds above sit ~20 s apart, a
compile between them), each column keeps ``--workers`` warm processes (compiled once,
waiting on their standard input) and each round is a burst of ``--repeats`` renders per
side, libfive's and then ours (the order swapped every other round), so the two sides of
a round are timed within a second of each other; a round uses the next of a column's
workers, so differences between processes are sampled too. The table then adds the
median of the rounds' ratios and its quartiles, and the ratio of each side's fastest
round: where the machine slows the two sides unevenly (session 23: libfive's sphere 512³
2.2× its quiet time, ours 1.3×), the median ratio leans to whichever side slowed more,
while each side's fastest round is nearest its unloaded speed; where the two estimates
disagree, neither is the quiet machine's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from libfive_peer import HALF, ONE_CORE, LineWorker, libfive_run, model_path, run_json

#: What both workers do first: load the model, then time its first frame (argv: model,
#: size, repeats, half, allocator).
_PRELUDE = """
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
solid = float(np.isfinite(first.z).mean())
"""
#: A round's process: the first frame, then the median of ``repeats`` renders.
WORKER = (
    _PRELUDE
    + """
times = []
for _ in range(repeats):
    started = time.perf_counter(); run(); times.append(time.perf_counter() - started)
print(json.dumps({"first_s": first_s, "median_s": statistics.median(times), "solid": solid}))
"""
)
#: ``--paired``'s worker: the first frame, renders for 3 s (at least 5: a compiled tier
#: bought by what interpreting cost compiles in a later frame), then a burst of renders per
#: line read.
WARM_WORKER = (
    _PRELUDE
    + """
warm, frames = time.perf_counter(), 0  # steady: frames that buy compiled tiers done
while frames < 5 or time.perf_counter() - warm < 3:
    run(); frames += 1
print(json.dumps({"first_s": first_s, "solid": solid}), flush=True)
for line in sys.stdin:
    times = []
    for _ in range(int(line)):
        started = time.perf_counter(); run(); times.append(time.perf_counter() - started)
    print(json.dumps({"median_s": statistics.median(times)}), flush=True)
"""
)


class Warm(LineWorker):
    """A warm worker process of one checkout (``tree``, None: this one)."""

    def __init__(
        self, path: Path, n: int, half: float, allocator: str, tree: str | None, pin: list[str]
    ):
        env = None if tree is None else {**os.environ, "PYTHONPATH": tree}
        args = [str(path), str(n), "0", str(half), allocator]  # bursts say their repeats
        super().__init__([*pin, sys.executable, "-c", WARM_WORKER, *args], env=env, cwd=tree)
        self.ready: dict[str, float] = self.read()  # type: ignore[assignment]

    def burst(self, repeats: int) -> float:
        self.send(str(repeats))
        return float(self.read()["median_s"])  # type: ignore[arg-type]


def paired(args: argparse.Namespace, models: list[str], sizes: list[int], columns: list) -> None:
    """``--paired``: the module docstring's last paragraph."""
    times: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in models:
            path, half = model_path(name, Path(scratch)), HALF.get(name, 1.0)
            for n in sizes:
                workers = {
                    column: [
                        Warm(path, n, half, allocator, tree, args.pin) for _ in range(args.workers)
                    ]
                    for column, tree, allocator in columns
                }
                firsts = {c: [f"{w.ready['first_s']:.1f}" for w in ws] for c, ws in workers.items()}
                solids = {c: [f"{w.ready['solid']:.3f}" for w in ws] for c, ws in workers.items()}
                print(f"{name} {n}: workers ready (first frames, s: {firsts}; solid {solids})")
                for round_ in range(args.rounds):
                    sides = ["libfive", *workers]
                    line = f"round {round_ + 1}: {name} {n}:"
                    for side in sides if round_ % 2 == 0 else sides[::-1]:
                        if side == "libfive":
                            got = libfive_run(
                                args.libfive, path, "hm", n, half, args.repeats, args.pin
                            )
                            seconds = float(got["median_s"])  # type: ignore[arg-type]
                            solid = f" (solid {got['solid']:.3f})" if round_ == 0 else ""
                        else:
                            seconds = workers[side][round_ % args.workers].burst(args.repeats)
                        times.setdefault((name, n, side), []).append(seconds)
                        line += f" {side} {seconds:.4f} s" + (solid if side == "libfive" else "")
                    print(line, flush=True)
                for ws in workers.values():
                    for worker in ws:
                        worker.close()
    head = " | ".join(
        f"{c} (s) | {c} ÷ libfive, rounds' median [quartiles]; fastest ÷ fastest"
        for c, _, _ in columns
    )
    print(f"\n| model | N | libfive, 1 thread (s) | {head} |")
    print("|---|---|---|" + "---|---|" * len(columns))
    for name in models:
        for n in sizes:
            peer = times[(name, n, "libfive")]
            row = (
                f"| {name} | {n} | {statistics.median(peer):.4f} [{min(peer):.4f}–{max(peer):.4f}] "
            )
            for column, _, _ in columns:
                ours = times[(name, n, column)]
                ratios = [o / p for o, p in zip(ours, peer, strict=True)]
                q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
                row += (
                    f"| {statistics.median(ours):.4f} [{min(ours):.4f}–{max(ours):.4f}] "
                    f"| {statistics.median(ratios):.2f} [{q1:.2f}–{q3:.2f}]; "
                    f"{min(ours) / min(peer):.2f} "
                )
            print(row + "|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libfive", type=Path, default=Path("/tmp/libfive-build/vm_bench"))
    parser.add_argument("--models", default="bear,colonnade,tanglecube,sphere")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--allocators", default="cli", help="cli (freed arrays reused), default")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="also time ours from another checkout")
    parser.add_argument("--paired", action="store_true", help="warm workers, bursts paired")
    parser.add_argument("--workers", type=int, default=3, help="--paired: processes a column")
    parser.add_argument(
        "--two-cores", action="store_true", help="let ours use both cores (before session 26)"
    )
    args = parser.parse_args()
    args.pin = [] if args.two_cores else ONE_CORE
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
    if args.paired:
        if args.workers < 1:
            parser.error("--workers: at least 1")
        paired(args, models, sizes, columns)
        return
    times: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name in models:
                path, half = model_path(name, Path(scratch)), HALF.get(name, 1.0)
                for n in sizes:
                    theirs = libfive_run(args.libfive, path, "hm", n, half, args.repeats, args.pin)
                    times.setdefault((name, n, "libfive"), []).append(float(theirs["median_s"]))  # type: ignore[arg-type]
                    line = f"round {round_ + 1}: {name} {n}: libfive {theirs['median_s']:.3f} s"
                    for column, tree, allocator in columns:
                        got = run_json(
                            [*args.pin, sys.executable, "-c", WORKER, str(path), str(n),
                             str(args.repeats), str(half), allocator],
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
