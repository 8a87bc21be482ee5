"""Float32 derivatives on the shared solids: NaN normals and mesh vertices off the surface.

    python experiments/float32_normals.py --size 256 --resolution 64

For each shared 3-D model: the default (float32) heightmap's surface pixels, how many get
a non-finite normal, and the largest angle to the float64 heightmap's normal where both
found the same sample; then the default mesh's vertices and their largest |f| (float64
oracle) after the Newton steps that move them onto the surface.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import prospero_jax as pj
from prospero_jax.evaluators.oracle import evaluate

MODELS = Path(__file__).resolve().parent.parent.parent / "shared" / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    print("| model | surface pixels | non-finite normals | max angle to float64 (°) |")
    print("|---|---|---|---|")
    for name in ("bear", "tanglecube", "colonnade"):
        program = pj.load(MODELS / f"{name}.vm")
        single = pj.render_heightmap(program, args.size)
        double = pj.render_heightmap(program, args.size, target=pj.Target(dtype="float64"))
        assert single.normal is not None
        assert double.normal is not None
        surface = np.isfinite(single.z)
        bad = surface & ~np.isfinite(single.normal).all(axis=2)
        same = (np.abs(single.z - double.z) < 1e-6) & ~bad
        cosine = np.clip(np.sum(single.normal[same] * double.normal[same], axis=1), -1, 1)
        angle = np.degrees(np.arccos(cosine)).max() if same.any() else float("nan")
        print(f"| {name} | {surface.sum():,} | {bad.sum():,} | {angle:.2g} |")
    print("\n| model | vertices | max abs f | vertices with abs f > 1e-4 |")
    print("|---|---|---|---|")
    for name in ("bear", "tanglecube", "colonnade"):
        program = pj.load(MODELS / f"{name}.vm")
        vertices = pj.mesh(program, args.resolution).vertices
        residual = np.abs(evaluate(program, *vertices.T))
        share = (residual > 1e-4).mean() * 100
        print(f"| {name} | {len(vertices):,} | {residual.max():.2g} | {share:.1f} % |")


if __name__ == "__main__":
    main()
