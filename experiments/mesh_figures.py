"""Pictures of meshes for the README: a sharp model and a smooth one, dual contouring
beside marching cubes (flat-shaded triangles, drawn by a small z-buffer here).

    python experiments/mesh_figures.py   # writes experiments/figures/mesh_*.png
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from libfive_peer import BOXES  # the two boxes of the mesh tests (experiments/)

import prospero_jax as pj

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "experiments" / "figures"
LIGHT = np.array([-0.4, 0.5, 0.77]) / np.linalg.norm([-0.4, 0.5, 0.77])


def draw(mesh: pj.Mesh, turn: np.ndarray, size: int = 360, half: float = 1.0) -> np.ndarray:
    """A greyscale image of ``mesh`` seen along -z after ``turn``: flat shading, z-buffer."""
    v = mesh.vertices @ turn.T
    tri = v[mesh.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
    shade = np.clip(normal @ LIGHT, 0, 1) * 0.85 + 0.15
    px = (tri[:, :, :2] + half) / (2 * half) * (size - 1)
    px[:, :, 1] = size - 1 - px[:, :, 1]
    depth = np.full((size, size), -np.inf)
    image = np.zeros((size, size))
    for k in np.flatnonzero(normal[:, 2] > 0):  # facing the viewer
        (x0, y0), (x1, y1), (x2, y2) = px[k]
        lo = np.floor(px[k].min(axis=0)).astype(int).clip(0, size - 1)
        hi = np.ceil(px[k].max(axis=0)).astype(int).clip(0, size - 1)
        xs, ys = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
        det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        if abs(det) < 1e-12:
            continue
        a = ((y1 - y2) * (xs - x2) + (x2 - x1) * (ys - y2)) / det
        b = ((y2 - y0) * (xs - x2) + (x0 - x2) * (ys - y2)) / det
        c = 1 - a - b
        inside = (a >= -1e-9) & (b >= -1e-9) & (c >= -1e-9)
        z = a * tri[k, 0, 2] + b * tri[k, 1, 2] + c * tri[k, 2, 2]
        nearer = inside & (z > depth[ys, xs])
        depth[ys[nearer], xs[nearer]] = z[nearer]
        image[ys[nearer], xs[nearer]] = shade[k]
    return (image * 255).astype(np.uint8)


def main() -> None:
    warnings.simplefilter("ignore", pj.MeshWarning)
    boxes = pj.parse(BOXES, source="boxes")
    bear = pj.load(ROOT.parent / "shared" / "models" / "bear.vm")
    rows = []
    for program, resolution, half, (yaw, pitch) in (
        (boxes, 24, 1.0, (35, -30)),
        (bear, 64, 1.5, (-20, -10)),
    ):
        turn = pj.rotation(yaw, pitch).T  # the view's rotation: the model turned towards us
        pictures = []
        for method in ("cubes", "dual"):
            mesh = pj.mesh(program, resolution, bounds=(-half, half), method=method)
            pictures.append(draw(mesh, turn, half=half * 1.05))
        rows.append(np.concatenate(pictures, axis=1))
    for name, row in zip(("boxes", "bear"), rows, strict=True):
        pj.write_image(FIGURES / f"mesh_{name}.png", row)
        print(f"wrote {FIGURES / f'mesh_{name}.png'}")


if __name__ == "__main__":
    main()
