"""Heightmap normals and mesh projection, two trees alternated process by process.

    git worktree add /tmp/before BEFORE_COMMIT
    python experiments/normals_mesh_ab.py --before /tmp/before --rounds 2

Each process imports one tree, times a call (the first: it compiles), then the median of
3 steady calls: the normals (``heightmap_normals.surface_normals``) of a 512² heightmap
(``--normals N``), a whole heightmap with normals (``--heightmap N``: N² × N, off by
default), or ``pj.mesh`` at 128³
(``--mesh N``; ``--only mesh`` for meshes alone)
(regions as in libfive_heightmaps.py). Prints a row per case: both trees' first and
steady seconds (medians over rounds) and the steady ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT.parent / "shared" / "models"

WORKER = """
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import prospero_jax as pj
from prospero_jax.renderers import heightmap
models, name, n, kind = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
half = {"bear": 1.5, "tanglecube": 3.0}.get(name, 1.0)
program = pj.load(f"{models}/{name}.vm")
region = (-half, half, -half, half)
if kind == "normals":
    z = pj.render_heightmap(program, n, region=region, normals=False).z
    view = pj.View(n, region)
    import inspect  # the normals' signature gained the view's turn (session 8)
    try:  # a module of their own since session 25
        from prospero_jax.renderers.heightmap_normals import surface_normals as normals
    except ImportError:
        normals = heightmap._normals
    turned = "turn" in inspect.signature(normals).parameters
    extra = (None,) if turned else ()
    run = lambda: normals(program, *extra, view, z, pj.Target())
elif kind == "heightmap":
    run = lambda: pj.render_heightmap(program, n, region=region)
else:
    run = lambda: pj.mesh(program, n, bounds=(-half, half))
started = time.perf_counter(); run(); first = time.perf_counter() - started
times = []
for _ in range(3):
    started = time.perf_counter(); run(); times.append(time.perf_counter() - started)
print(json.dumps({"first": first, "median": statistics.median(times)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mesh", type=int, default=128, help="mesh resolution")
    parser.add_argument("--normals", type=int, default=512, help="heightmap side for normals")
    parser.add_argument(
        "--heightmap", type=int, default=0, help="also whole heightmaps with normals, N³"
    )
    parser.add_argument("--only", choices=("normals", "mesh", "heightmap"), default=None)
    args = parser.parse_args()
    trees = {"before": args.before, "after": ROOT}
    cases = [
        (model, n, kind)
        for kind, n in (
            ("normals", args.normals),
            ("mesh", args.mesh),
            ("heightmap", args.heightmap),
        )
        if args.only in (None, kind) and n > 0
        for model in ("bear", "colonnade", "tanglecube")
    ]
    results: dict[tuple[tuple[str, int, str], str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for model, n, kind in cases:
            for name, tree in trees.items():
                command = [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(tree),
                    str(MODELS),
                    model,
                    str(n),
                    kind,
                ]
                out = subprocess.run(command, check=True, capture_output=True, text=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault(((model, n, kind), name), []).append(result)
                print(model, n, kind, name, result, flush=True)
    print("| what | model | N | before: first / steady (s) | after: first / steady (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        (first_b, steady_b), (first_a, steady_a) = (
            (
                statistics.median(r["first"] for r in results[(case, name)]),
                statistics.median(r["median"] for r in results[(case, name)]),
            )
            for name in trees
        )
        model, n, kind = case
        print(
            f"| {kind} | {model} | {n} | {first_b:.2f} / {steady_b:.3f} "
            f"| {first_a:.2f} / {steady_a:.3f} | {steady_a / steady_b:.2f} |"
        )


if __name__ == "__main__":
    main()
