"""Heightmaps of the shared solids: culled against brute force, compile time, peak RSS.

    python experiments/heightmaps.py --models bear,colonnade --sizes 256,512,1024 --brute-max 512

Each row is a fresh process (JAX's persistent cache off, no stored executables): the
first call (compiling), then the median of ``--repeats`` steady calls, with the depth equal
to the side (``D = N``), float32, normals off (``--normals`` times them too); the peak RSS
is the process's. Brute force runs up to ``--brute-max`` (it evaluates every voxel) and its
heightmap is checked against the culled one as the contract says: equal wherever the
deciding sample (the shallower of the two where they differ) has ``|f64| ≥ 1e-5`` (the
culled heightmap draws the sign program, brute force the program as written; in float32
the two may disagree nearer 0 than that).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT.parent / "shared" / "models"
HALF = {"bear": 1.5, "colonnade": 1.0, "tanglecube": 3.0}

WORKER = """
import json, resource, statistics, sys, time
import numpy as np
import prospero_jax as pj
model, size, mode, repeats, normals, half = sys.argv[1:7]
size, repeats, half = int(size), int(repeats), float(half)
program = pj.load(model)
region = (-half, half, -half, half)
run = lambda: pj.render_heightmap(program, size, region=region, mode=mode, normals=normals == "1")
started = time.perf_counter(); first = run(); first_s = time.perf_counter() - started
times = []
for _ in range(repeats):
    started = time.perf_counter(); run(); times.append(time.perf_counter() - started)
np.save(sys.argv[7], first.z)
print(json.dumps({"first_s": first_s, "steady_s": statistics.median(times),
                  "solid": float(np.isfinite(first.z).mean()),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(model: str, size: int, mode: str, repeats: int, normals: bool, out: Path) -> dict:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    args = [str(MODELS / f"{model}.vm"), str(size), mode, str(repeats), str(int(normals)),
            str(HALF[model]), str(out)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", WORKER, *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def agreement(model: str, size: int, brute: Path, culled: Path) -> str:
    """ "yes", "yes (N px within 1e-5)" or "NO (N px)": the module docstring's check."""
    import numpy as np

    import prospero_jax as pj
    from prospero_jax.evaluators.oracle import evaluate

    a, b = np.load(brute), np.load(culled)
    rows, cols = np.nonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
    if not len(rows):
        return "yes"
    half = HALF[model]
    xs, ys = pj.View(size, (-half, half, -half, half)).axes()
    z = np.fmax(a[rows, cols], b[rows, cols])  # the shallower first sample (NaN: none)
    at = [np.float32(v).astype(np.float64) for v in (xs[cols], ys[rows], z)]
    value = evaluate(pj.load(MODELS / f"{model}.vm"), *at)
    bad = int((np.abs(value) >= 1e-5).sum())
    return f"NO ({bad} px)" if bad else f"yes ({len(rows)} px within 1e-5)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bear,colonnade")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--brute-max", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--normals", action="store_true")
    args = parser.parse_args()

    print(
        "| model | N = D | mode | first call (s) | steady (s) | peak RSS (MB) | solid | = culled |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            culled_z = Path(f"/tmp/heightmap-{model}-{size}-culled.npy")
            modes = ["culled"] + (["brute"] if size <= args.brute_max else [])
            for mode in modes:
                out = Path(f"/tmp/heightmap-{model}-{size}-{mode}.npy")
                row = run(model, size, mode, args.repeats, args.normals, out)
                same = "" if mode == "culled" else agreement(model, size, out, culled_z)
                print(f"| {model} | {size} | {mode} | {row['first_s']:.2f} | "
                      f"{row['steady_s']:.2f} | {row['peak_mb']:.0f} | {row['solid']:.1%} | "
                      f"{same} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
