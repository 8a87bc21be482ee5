"""Self-intersections: pairs of triangles that cross, and edges whose two triangles fold
onto each other, in meshes of the sharp shapes, thin plates and the shared solids.

    python experiments/self_intersections.py --sizes 48,64,96,101,151

For each shape and resolution: dual contouring merged (the default tolerance), every cell
(tolerance 0) and marching cubes; the faces, the crossing pairs and the folds of
``tests/geometry.py`` (an edge of one triangle through another's interior by more than
1e-5 of its size, in float64; coplanar overlaps included; folds: two triangles on one edge
within a degree of lying on each other). Shapes: the mesh tests' cube, octahedron and two
boxes, a plate 0.01 thick tilted to (1, 1, 1) cut by the box ``|x|, |y|, |z| ≤ 0.6``
(``--plate``: its normal; ``--shapes plate`` for it alone; ``--random-plates K``: K more
plates with normals drawn from a seeded normal distribution, rounded to 0.01), and bear
(±1.5), colonnade (±1), tanglecube (±3).

    python experiments/self_intersections.py --shapes "plate (" --random-plates 16 \
        --sizes 99,101,151,203
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

import prospero_jax as pj

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' shapes
from tests.conftest import shared_path
from tests.geometry import folds, self_intersections
from tests.test_mesh import SHARP, plate

SOLIDS = {"bear": 1.5, "colonnade": 1.0, "tanglecube": 3.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="48,64,96,101,151")
    parser.add_argument("--plate", default="1,1,1", help="the plate's normal")
    parser.add_argument("--shapes", default="", help="only shapes whose names start so (a,b)")
    parser.add_argument("--random-plates", type=int, default=0, help="more plates, at random")
    parser.add_argument("--seed", type=int, default=0, help="the random plates' seed")
    args = parser.parse_args()
    shapes = {name: (program, 1.0) for name, (program, _, _) in SHARP.items()}
    normals = [tuple(float(v) for v in args.plate.split(","))]
    rng = np.random.default_rng(args.seed)
    normals += [tuple(float(v) for v in np.round(rng.normal(size=3), 2))
                for _ in range(args.random_plates)]  # fmt: skip
    for n in normals:
        shapes[f"plate ({n[0]:g},{n[1]:g},{n[2]:g})"] = (plate((n[0], n[1], n[2])), 1.0)
    for name, half in SOLIDS.items():
        shapes[name] = (pj.load(shared_path(f"models/{name}.vm")), half)
    print("| shape | N | dual merged: faces / crossing pairs / folds | every cell | cubes |")
    print("|---|---|---|---|---|")
    wanted = tuple(w for w in args.shapes.split(",") if w)
    for name, (program, half) in shapes.items():
        if wanted and not name.startswith(wanted):
            continue
        for n in (int(s) for s in args.sizes.split(",")):
            row = f"| {name} | {n} |"
            for method, tolerance in (("dual", 1e-4), ("dual", 0.0), ("cubes", 0.0)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", pj.MeshWarning)
                    m = pj.mesh(program, n, bounds=(-half, half), method=method,
                                tolerance=tolerance)  # fmt: skip
                crossing = len(self_intersections(m.vertices, m.faces))
                row += f" {len(m.faces):,} / {crossing} / {folds(m.vertices, m.faces)} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
