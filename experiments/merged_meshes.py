"""Merged cells against the grid's: faces, and how far the merged mesh is from the dense one.

    python experiments/merged_meshes.py --sizes 128,256

For each model, ``pj.mesh`` with the default tolerance (cells merged) and with
``tolerance=0`` (every crossed cell its own vertex). The distance between the two is a
sampled Hausdorff distance: points spread over each mesh's triangles about ``h / 4``
apart (and the vertices), each side's largest distance to the other's nearest sample, in
cells ``h``; sampling adds up to about ``h / 4``. Also: the merged mesh's largest distance
from the surface itself, ``|f| / |∇f|`` at its samples (float64 oracle, central
differences), in cells.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.spatial import cKDTree

import prospero_jax as pj
from tests.conftest import shared_path
from tests.test_mesh import SHARP

HALF = {"bear": 1.5, "tanglecube": 3.0}


def samples(mesh: pj.Mesh, spacing: float) -> np.ndarray:
    """Points on every triangle about ``spacing`` apart, and the vertices."""
    tri = mesh.vertices[mesh.faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    count = np.maximum(1, np.ceil(2 * area / spacing**2)).astype(int)
    which = np.repeat(np.arange(len(tri)), count)
    u, v = np.random.default_rng(0).random((2, len(which)))
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[which]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return np.concatenate([points, mesh.vertices])


def surface_distance(program: pj.Program, points: np.ndarray, h: float) -> np.ndarray:
    f = pj.reference.evaluate(program, *points.T)
    e = 1e-6
    grad = np.stack(
        [(pj.reference.evaluate(program, *(points + e * np.eye(3)[k]).T)
          - pj.reference.evaluate(program, *(points - e * np.eye(3)[k]).T)) / (2 * e)
         for k in range(3)], axis=1,
    )  # fmt: skip
    return np.abs(f) / np.maximum(np.linalg.norm(grad, axis=1), 1e-12) / h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--models", default="colonnade,bear,tanglecube,two boxes,cube")
    args = parser.parse_args()
    warnings.simplefilter("ignore", pj.MeshWarning)
    print("| model | N | faces, merged | faces, every cell | merged ÷ every | seconds merged / "
          "every | Hausdorff (h) | merged's distance to the surface (h) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        if name in SHARP:
            program, half = SHARP[name][0], 1.0
        else:
            program, half = pj.load(shared_path(f"models/{name}.vm")), HALF.get(name, 1.0)
        for n in (int(s) for s in args.sizes.split(",")):
            h = 2 * half / (n - 1)
            pj.mesh(program, 32, bounds=(-half, half))  # compile, load
            started = time.perf_counter()
            merged = pj.mesh(program, n, bounds=(-half, half))
            merged_s = time.perf_counter() - started
            started = time.perf_counter()
            dense = pj.mesh(program, n, bounds=(-half, half), tolerance=0)
            dense_s = time.perf_counter() - started
            a, b = samples(merged, h / 4), samples(dense, h / 4)
            there = cKDTree(b).query(a)[0].max()
            back = cKDTree(a).query(b)[0].max()
            off = surface_distance(program, a, h).max()
            print(f"| {name} | {n} | {len(merged.faces):,} | {len(dense.faces):,} | "
                  f"{len(merged.faces) / len(dense.faces):.3f} | {merged_s:.2f} / {dense_s:.2f} "
                  f"| {max(there, back) / h:.2f} | {off:.2e} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
