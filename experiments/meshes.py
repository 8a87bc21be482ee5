"""Meshes of the shared solids: interval-culled slabs against a dense grid, side by side.

    python experiments/meshes.py --models bear,colonnade --resolutions 128,256,512 --dense-max 256

Each row is a fresh process (JAX's persistent cache off, no stored executables): the first
call (compiling) and a second one (steady), the peak RSS, vertex and face counts, whether
every edge is shared by exactly two faces (watertight) and every directed edge used once
(consistently wound), and the median |f| at the vertices. ``dense`` evaluates every grid
point (the unrolled closure, jitted, a plane at a time, into one N³ array) and runs the
same marching cubes on it, without moving the vertices: the brute-force baseline.
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
import json, resource, sys, time
import jax, numpy as np
import prospero_jax as pj
from skimage.measure import marching_cubes
model, resolution, mode, half = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
program = pj.load(model)

def dense():
    axis = np.linspace(-half, half, resolution).astype(np.float32)
    field = jax.jit(pj.to_function(program))
    x, y = np.meshgrid(axis, axis[::-1])
    volume = np.stack([np.asarray(field(x, y, np.full_like(x, z))) for z in axis])
    v, f, _, _ = marching_cubes(volume, 0.0, gradient_direction="ascent")
    return pj.Mesh(v, f[:, ::-1])

run = dense if mode == "dense" else lambda: pj.mesh(program, resolution, bounds=(-half, half))
started = time.perf_counter(); surface = run(); first = time.perf_counter() - started
started = time.perf_counter(); surface = run(); steady = time.perf_counter() - started
faces = surface.faces
directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
_, twice = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
_, once = np.unique(directed, axis=0, return_counts=True)
on = float("nan")
if mode != "dense":
    on = float(np.median(np.abs(pj.reference.evaluate(program, *surface.vertices.T))))
print(json.dumps({"first_s": first, "steady_s": steady, "vertices": len(surface.vertices),
                  "faces": len(faces), "watertight": bool((twice == 2).all()),
                  "wound": bool((once == 1).all()), "median_f": on,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(model: str, resolution: int, mode: str) -> dict:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    args = [str(MODELS / f"{model}.vm"), str(resolution), mode, str(HALF[model])]
    done = subprocess.run(
        [sys.executable, "-c", WORKER, *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bear,colonnade")
    parser.add_argument("--resolutions", default="128,256,512")
    parser.add_argument("--dense-max", type=int, default=256)
    args = parser.parse_args()
    print("| model | N | mode | first call (s) | steady (s) | peak RSS (MB) | vertices | faces "
          "| watertight | wound | median |f| |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for n in (int(r) for r in args.resolutions.split(",")):
            for mode in ["culled"] + (["dense"] if n <= args.dense_max else []):
                r = run(model, n, mode)
                cells = [model, n, mode, f"{r['first_s']:.2f}", f"{r['steady_s']:.2f}",
                         f"{r['peak_mb']:.0f}", f"{r['vertices']:,}", f"{r['faces']:,}",
                         r["watertight"], r["wound"], f"{r['median_f']:.1e}"]  # fmt: skip
                print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
