"""Sharp features: how far a mesh's vertices are from the surface and its corners from the
mesh's vertices, in cells, for dual contouring and marching cubes.

    python experiments/sharp_features.py --sizes 64,128,256

Shapes (their fields are distances times a known slope, so |f| / slope is the distance): a
cube ``max(|x|, |y|, |z|) - 0.5``, an octahedron ``|x| + |y| + |z| - 0.7`` and a union of two
boxes (the mesh tests'). Corners: the boxes' and the octahedron's vertices that lie on the
surface. Prints the faces, the largest vertex distance and the largest corner distance,
both over the cell size h.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import prospero_jax as pj

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' shapes
from tests.test_mesh import SHARP, edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256")
    args = parser.parse_args()
    head = "| shape | N | method | faces | manifold | max vertex distance / h "
    print(head + "| max corner distance / h |")
    print("|---|---|---|---|---|---|---|")
    for shape, (program, slope, corners) in sorted(SHARP.items()):
        points = np.array(corners, np.float64)
        points = points[np.abs(pj.reference.evaluate(program, *points.T)) < 1e-12]
        for n in (int(s) for s in args.sizes.split(",")):
            h = 2 / (n - 1)
            for method in ("dual", "cubes"):
                mesh = pj.mesh(program, n, method=method)
                undirected, once = edges(mesh.faces)
                manifold = bool((undirected == 2).all() and (once == 1).all())
                distance = np.abs(pj.reference.evaluate(program, *mesh.vertices.T)) / slope
                corner = max(np.linalg.norm(mesh.vertices - p, axis=1).min() for p in points)
                print(f"| {shape} | {n} | {method} | {len(mesh.faces):,} | {manifold} | "
                      f"{distance.max() / h:.1e} | {corner / h:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
