"""The GPU check: brute force, culling, derivatives and the seed's CuPy approach, one call.

Run on a machine with an accelerator (``experiments/gpu_check.sh`` does, within 8 minutes);
on CPU with small sizes it checks itself. For prospero, per size: brute force and culled
renders, culled both as the default (the sign program) and ``exact`` (op by op) (first
call = compile + run, then the median of steady renders), the pixels that differ between
brute force and the default culled image; the gradient's compile and run (``jax.grad`` of
the field through the dual interpreter); and, where CuPy is installed, the seed's
approach: one CuPy kernel per instruction over the whole image, float32, liveness GC.
Every measurement has a time budget; what does not fit is reported as skipped, never
guessed. Writes JSON and prints a Markdown table.

    python experiments/gpu_check.py --sizes 1024,4096,16384 --out results/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import prospero_jax as pj

ROOT = Path(__file__).resolve().parent.parent
# The shared inputs: ../shared beside the checkout, or PROSPERO_SHARED (the device machine
# gets a copy carried in an ignored folder, since ../shared does not travel).
SHARED = Path(os.environ.get("PROSPERO_SHARED", ROOT.parent / "shared"))
PROGRAM = SHARED / "prospero.vm"


def timed(run: Callable[[], Any], repeats: int, budget_s: float) -> dict[str, Any]:
    """First call (compile + run), then up to ``repeats`` steady calls within the budget."""
    start = time.perf_counter()
    out = run()
    first = time.perf_counter() - start
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < repeats and time.perf_counter() - began < budget_s:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    steady = statistics.median(times) if times else None
    return {"first_s": first, "steady_s": steady, "runs": len(times), "result": out}


def seed_cupy(text: str, size: int) -> Callable[[], Any] | None:
    """The challenge seed's approach on CuPy: one kernel per instruction, liveness GC,
    float32 (``bench_render.seed_render`` with CuPy as its array module)."""
    try:
        import cupy as cp  # type: ignore[import-not-found]
    except ImportError:
        return None
    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_render import seed_render

    def run() -> Any:
        image = seed_render(text, size, cp, "float32")
        cp.cuda.Device().synchronize()
        return cp.asnumpy(image)

    return run


def grad_row(
    program: pj.Program, points: int, repeats: int, budget: float, add: Callable[..., None]
) -> None:
    """The gradient's compile and steady run: ``jax.grad`` through the dual interpreter."""
    f = pj.to_function(program, derivatives="interpreter")
    grad = jax.jit(jax.grad(lambda x, y: jnp.sum(f(x, y)), argnums=(0, 1)))
    # Reverse mode through the scan keeps every row's operands: memory grows with
    # points × rows, so a modest batch (4,096 points: ~0.3 GB for prospero).
    xs = jnp.linspace(-1, 1, points, dtype=jnp.float32)
    start = time.perf_counter()
    compiled = grad.lower(xs, xs).compile()
    compile_s = time.perf_counter() - start
    row = timed(lambda: jax.block_until_ready(compiled(xs, xs)), repeats, budget)
    row.pop("result")
    add({"what": f"grad (dual interpreter), {points} points", "compile_s": compile_s, **row})


def search_against_slices(solid: pj.Program, size: int) -> int:
    """Samples where the accelerators' column search and the slice-by-slice brute force
    disagree (the heightmap's two brute-force paths; 0 expected), on this device."""
    from prospero_jax.renderers import heightmap
    from prospero_jax.renderers.render import drawn

    view, target = pj.View(size), pj.Target()
    sign, zs = drawn(solid, target, culled=False), view.zs()
    with target.precision():
        slices = heightmap._slices(sign, view, zs, target, None)
        searched = heightmap._searched(sign, view, zs, target, None)
    return int(np.count_nonzero(slices != searched))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096,16384")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--program", type=Path, default=PROGRAM)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--grad-points", type=int, default=4096, help="0: no gradient")
    parser.add_argument("--solids", default="bear,colonnade", help="3-D models, '' for none")
    parser.add_argument("--heightmap", type=int, default=1024, help="heightmap side")
    parser.add_argument(
        "--modes",
        default="brute,culled,culled-exact",
        help="images timed (a -exact suffix: op by op)",
    )
    parser.add_argument("--no-seed", action="store_true", help="skip the seed on CuPy")
    args = parser.parse_args()
    program = pj.load(args.program)
    device = jax.devices()[0]
    report: dict[str, Any] = {
        "device": str(device), "platform": device.platform, "jax": jax.__version__,
        "machine": platform.platform(), "program": str(args.program), "rows": [],
    }  # fmt: skip
    print(f"device: {device} ({device.platform}); jax {jax.__version__}", file=sys.stderr)

    def add(row: dict[str, Any]) -> None:
        """Record a row, and write the report so far: a run cut off keeps what it measured."""
        report["rows"].append(row)
        print(row, file=sys.stderr)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))

    # The solids and the gradient first, then the sizes, smallest first: a run cut off at
    # its time limit loses only the largest size.
    if args.grad_points:
        grad_row(program, args.grad_points, args.repeats, args.budget, add)
    for name in filter(None, args.solids.split(",")):
        solid = pj.load(SHARED / "models" / f"{name}.vm")
        for normals in (False, True):
            what = f"heightmap {name}" + (" + normals" if normals else "")
            row = timed(
                lambda s=solid, n=normals: pj.render_heightmap(s, args.heightmap, normals=n),
                args.repeats,
                args.budget,
            )
            covered = int(np.count_nonzero(np.isfinite(row.pop("result").z)))
            add({"what": what, "size": args.heightmap, **row, "value": covered})
        add({"what": f"heightmap {name}: column search vs slices, samples differing",
             "size": 256, "value": search_against_slices(solid, 256)})  # fmt: skip
    for size in (int(s) for s in filter(None, args.sizes.split(","))):
        images: dict[str, Any] = {}
        # culled: the sign program (the default); culled-exact: the program op by op
        for mode in args.modes.split(","):
            if size * size > pj.MEMORY_LIMIT:
                add({"what": mode, "size": size, "skipped": "above MEMORY_LIMIT"})
                continue
            row = timed(
                lambda m=mode, n=size: pj.render(
                    program, n, mode=m.split("-")[0], exact=m.endswith("exact")
                ),
                args.repeats,
                args.budget,
            )
            images[mode] = row.pop("result")
            add({"what": mode, "size": size, **row})
        if "brute" in images and "culled" in images:
            differ = int(np.count_nonzero(images["brute"] != images["culled"]))
            add({"what": "brute vs culled pixels differing", "size": size,
                                   "value": differ})  # fmt: skip
        if args.no_seed:
            continue
        run = seed_cupy(args.program.read_text(), size)
        if run is None:
            add({"what": "seed-cupy", "size": size, "skipped": "no cupy"})
        else:
            row = timed(run, args.repeats, args.budget)
            image = row.pop("result")
            if "culled" in images:
                row["pixels_vs_culled"] = int(np.count_nonzero(image != images["culled"]))
            add({"what": "seed-cupy", "size": size, **row})
    print("| what | size | first call (s) | steady median (s) | runs | note |")
    print("|---|---|---|---|---|---|")
    for r in report["rows"]:
        first = f"{r['first_s']:.3f}" if "first_s" in r else "-"
        steady = f"{r['steady_s']:.4f}" if r.get("steady_s") is not None else "-"
        note = r.get("skipped") or (f"compile {r['compile_s']:.2f} s" if "compile_s" in r else "")
        note = note or (f"{r['value']} px" if "value" in r else "")
        print(f"| {r['what']} | {r.get('size', '-')} | {first} | {steady} | {r.get('runs', '-')} "
              f"| {note} |")  # fmt: skip


if __name__ == "__main__":
    main()
