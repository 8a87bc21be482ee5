"""Where a mesh's time goes in the kernel: wall, user and system seconds and page faults of
steady meshes, with glibc's allocator as it comes, with NumPy's huge pages off, and with
freed memory reused (``pj.reuse_freed_memory()``, what the CLI does).

    python experiments/allocator.py --model colonnade --size 512 --meshes 3 --rounds 2

Each configuration runs in a fresh process (the allocator's setting is process-wide and not
undone): one mesh that compiles, then ``--meshes`` steady ones, each measured with
``resource.getrusage``. The configurations alternate within each round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
HALF = {"bear": 1.5, "tanglecube": 3.0}

WORKER = """
import json, resource, sys, time, warnings
import prospero_jax as pj
warnings.simplefilter("ignore")
path, size, meshes, half, reuse = sys.argv[1:6]
if reuse == "1":
    pj.reuse_freed_memory()
program = pj.load(path)
run = lambda: pj.mesh(program, int(size), bounds=(-float(half), float(half)))
run()
rows = []
for _ in range(int(meshes)):
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    rows.append([wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
                 after.ru_minflt - before.ru_minflt])
print(json.dumps(rows))
"""

CONFIGURATIONS = {
    "as it comes": ({}, "0"),
    "NUMPY_MADVISE_HUGEPAGE=0": ({"NUMPY_MADVISE_HUGEPAGE": "0"}, "0"),
    "reuse_freed_memory()": ({}, "1"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="colonnade")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--meshes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    path = SHARED / "models" / f"{args.model}.vm"
    half = str(HALF.get(args.model, 1.0))
    print("| round | process | wall (s) | user (s) | system (s) | page faults |")
    print("|---|---|---|---|---|---|")
    for round_ in range(args.rounds):
        for name, (env, reuse) in CONFIGURATIONS.items():
            out = subprocess.run(
                [sys.executable, "-c", WORKER, str(path), str(args.size), str(args.meshes),
                 half, reuse],
                env={**os.environ, **env}, capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows = json.loads(out.stdout.strip().splitlines()[-1])
            cells = [", ".join(f"{row[k]:.2f}" for row in rows) for k in range(3)]
            faults = ", ".join(f"{row[3] / 1000:.0f} k" for row in rows)
            print(f"| {round_ + 1} | {name} | {' | '.join(cells)} | {faults} |", flush=True)


if __name__ == "__main__":
    main()
