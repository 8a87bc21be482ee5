"""Our frame time against a peer's, side by side: the peer's process and ours, alternated.

The peer is CF Bolz-Tereick's C renderer (``../shared/peers/run_bolz.sh``: interval
quadtree, min/max pruning, demanded sign, SIMD, one thread; its own timer: CPU time per
frame over 100 frames, parsing excluded). Ours: a fresh process per round that loads the
program, renders once (compiling; the persistent cache off), then reports the median of
``--frames`` steady renders (``pj.render``, culled, float32, the sign program, on the XLA
kernels, ``tier="kernels"``; with ``--exact`` also the program op by op; with ``--host``
also the host tier, which draws a process's first frames with nothing to compile; with
``--before TREE`` also ours from another checkout, e.g. a worktree of an earlier commit):
frame time, parsing and compiling excluded, like the peer's. ``--devices 2`` also times
ours sharded over two forced host devices (both cores). At 1024², the challenge's NumPy-GC
reference (float64, liveness GC; ``experiments/bench_render.py``'s ``seed``) is timed once
per round too.
Prints each round, then medians and ratios.

    python experiments/peers.py --sizes 1024,4096 --rounds 5 --exact
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PROGRAM = SHARED / "prospero.vm"
PEER = "peer (bolz, C, 1 thread)"


def peer_ms(size: int) -> float:
    out = subprocess.run(
        ["bash", str(SHARED / "peers" / "run_bolz.sh"), str(size), "1", str(PROGRAM)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"median: ([0-9.]+)", out.stdout)
    if match is None:
        raise RuntimeError(f"no timing in the peer's output: {out.stdout} {out.stderr}")
    return float(match.group(1))


def ours_ms(
    size: int,
    frames: int,
    devices: int,
    exact: bool = False,
    tier: str = "kernels",
    tree: str | None = None,
) -> float:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    if tree is not None:  # another checkout of prospero-jax (a commit before a change)
        env["PYTHONPATH"] = tree
    if devices > 1:
        env["XLA_FLAGS"] = (
            f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
        ).strip()
    code = f"""
import json, statistics, time
import prospero_jax as pj
program = pj.load({str(PROGRAM)!r})
options = dict(mode="culled", devices="all" if {devices} > 1 else None, exact={exact},
               tier={tier!r})
pj.render(program, {size}, **options)
times = []
for _ in range({frames}):
    start = time.perf_counter()
    pj.render(program, {size}, **options)
    times.append(time.perf_counter() - start)
print(json.dumps(statistics.median(times) * 1e3))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
        cwd=tree,  # `-c` puts the working directory first on the path
    )  # fmt: skip
    return float(json.loads(out.stdout.splitlines()[-1]))


def numpy_ms(size: int) -> float:
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "bench_render.py"), "--worker", "seed",
         "--sizes", str(size), "--repeats", "1", "--program", str(PROGRAM)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return 1e3 * float(json.loads(out.stdout.splitlines()[-1])["times_s"][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--devices", type=int, default=1, help="also time ours on N devices")
    parser.add_argument("--numpy", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--exact", action="store_true", help="also time ours op by op (exact=True)")
    parser.add_argument("--host", action="store_true", help="also time ours on the host tier")
    parser.add_argument(
        "--before", help="also time ours from another checkout (e.g. a git worktree of a commit)"
    )
    args = parser.parse_args()
    results: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        for size in (int(s) for s in args.sizes.split(",")):
            runs = {
                PEER: lambda s=size: peer_ms(s),
                "prospero-jax culled, 1 device": lambda s=size: ours_ms(s, args.frames, 1),
            }
            if args.exact:
                runs["prospero-jax culled --exact, 1 device"] = lambda s=size: ours_ms(
                    s, args.frames, 1, exact=True
                )
            if args.host:
                runs["prospero-jax culled, host tier"] = lambda s=size: ours_ms(
                    s, args.frames, 1, tier="host"
                )
            if args.before:
                runs[f"prospero-jax culled, {args.before}"] = lambda s=size: ours_ms(
                    s, args.frames, 1, tree=args.before
                )
            if args.devices > 1:
                runs[f"prospero-jax culled, {args.devices} devices"] = lambda s=size: ours_ms(
                    s, args.frames, args.devices
                )
            if args.numpy and size <= 1024:
                runs["NumPy-GC reference (seed, float64)"] = lambda s=size: numpy_ms(s)
            for name, run in runs.items():
                value = run()
                results.setdefault((name, size), []).append(value)
                print(f"round {round_ + 1}: {name} {size}²: {value:.2f} ms", file=sys.stderr)
    print(f"prospero, frame time (parsing and compiling excluded), {args.rounds} alternated rounds")
    print("| renderer | size | median (ms) [min–max] | ours ÷ peer | peer ÷ this |")
    print("|---|---|---|---|---|")
    for (name, size), values in results.items():
        median = statistics.median(values)
        peer = statistics.median(results[PEER, size])
        print(f"| {name} | {size}² | {median:.2f} [{min(values):.2f}–{max(values):.2f}] "
              f"| {median / peer:.2f} | {peer / median:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
