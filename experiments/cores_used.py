"""How many cores a process of ours uses rendering heightmaps, and what one core costs it.

    python experiments/cores_used.py --models bear,colonnade,tanglecube,sphere --size 512

For each model (regions as in libfive_heightmaps.py; depth = size, normals on, float32,
freed arrays reused as the CLI does), fresh processes alternated ``--rounds`` times: one
free to use both cores, one pinned to core 0 (``taskset -c 0``), and with ``--sync`` one
with JAX's asynchronous dispatch off (``jax_cpu_enable_async_dispatch``). Each warms up,
then times ``--frames`` steady frames and prints their median and its CPU time ÷ wall
time over them (``getrusage``): above 1, its threads ran beside each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from libfive_peer import HALF, ONE_CORE, model_path, run_json

WORKER = """
import json, resource, statistics, sys, time
import jax
if sys.argv[4] == "sync":
    jax.config.update("jax_cpu_enable_async_dispatch", False)
import prospero_jax as pj
model, size, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
half = float(sys.argv[5])
pj.reuse_freed_memory()
program = pj.load(model)
region = (-half, half, -half, half)
run = lambda: pj.render_heightmap(program, size, region=region, normals=True)
for _ in range(3):
    run()
before, started, times = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), []
for _ in range(frames):
    begin = time.perf_counter(); run(); times.append(time.perf_counter() - begin)
after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
print(json.dumps({"median_s": statistics.median(times), "cores": cpu / wall}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bear,colonnade,tanglecube,sphere")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sync", action="store_true", help="also asynchronous dispatch off")
    args = parser.parse_args()
    kinds = {"two cores": ([], "async"), "one core": (ONE_CORE, "async")}
    if args.sync:
        kinds["two cores, sync"] = ([], "sync")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            path, half = model_path(name, Path(scratch)), HALF.get(name, 1.0)
            got: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            for _ in range(args.rounds):
                for kind, (pin, dispatch) in kinds.items():
                    command = [*pin, sys.executable, "-c", WORKER, str(path), str(args.size)]
                    out = run_json([*command, str(args.frames), dispatch, str(half)])
                    got[kind].append(out)  # type: ignore[arg-type]
                    print(f"{name} {args.size}³ {kind}: {json.dumps(out)}", flush=True)
            for kind, runs in got.items():
                times = ", ".join(f"{r['median_s']:.3f}" for r in runs)
                cores = statistics.median(r["cores"] for r in runs)
                print(f"{name} {args.size}³, {kind}: frames {times} s; cores used {cores:.2f}")


if __name__ == "__main__":
    main()
