"""The image contracts on an accelerator: prospero's images against the float64 oracle.

The CPU suite holds every renderer to the oracle; an accelerator compiles the same
programs differently (XLA:GPU fuses and contracts multiply-adds), so this checks there
what a user gets: for each size, the default image (the sign program; brute force on an
accelerator), ``exact=True`` (op by op) and culling, each against the float64 value of
the *original* program at every pixel. Reported per image: pixels that differ from the
oracle's image, how many of those have |value| ≥ 1e-5 (the default's contract: none), and
the largest |value| among them. The oracle is the project's NumPy interpreter up to
``--numpy-max`` pixels a side, and above it the same interpreter run on CuPy in float64
(checked against NumPy's on the smallest size).

    python experiments/gpu_contract.py --sizes 1024,4096 --out results/gpu_contract.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import prospero_jax as pj
from prospero_jax.evaluators.unroll import plan, run
from prospero_jax.renderers.view import DEFAULT_REGION, axes, to_pixels

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PROSPERO_SHARED", ROOT.parent / "shared"))
BAND = 1e-5  # the default image's contract: equal to the oracle's wherever |value| ≥ BAND

IMAGES: dict[str, dict[str, Any]] = {
    "default": {},
    "exact": {"exact": True},
    "culled": {"mode": "culled"},
}


def oracle_cupy(program: pj.Program, size: int) -> np.ndarray | None:
    """The oracle's interpreter on CuPy, float64 (None without CuPy)."""
    try:
        import cupy as cp  # type: ignore[import-not-found]
    except ImportError:
        return None
    xs, ys = axes(size, DEFAULT_REGION)
    x, y = cp.asarray(xs)[None, :], cp.asarray(ys)[:, None]
    value = run(plan(program), cp, x, y, cp.float64(0.0), lambda _, c: np.float64(c))
    return np.broadcast_to(cp.asnumpy(value), (size, size)).copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--numpy-max", type=int, default=1024)
    parser.add_argument("--program", type=Path, default=SHARED / "prospero.vm")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    program = pj.load(args.program)
    device = jax.devices()[0]
    report: dict[str, Any] = {"device": str(device), "jax": jax.__version__, "rows": []}
    print(f"device: {device}; jax {jax.__version__}", file=sys.stderr)
    for size in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        if size <= args.numpy_max:
            values, judge = pj.reference.values(program, size), "numpy"
            on_cupy = oracle_cupy(program, size)
            if on_cupy is not None:
                report["rows"].append({"size": size, "what": "cupy oracle vs numpy",
                    "max_abs_difference": float(np.nanmax(np.abs(on_cupy - values)))})  # fmt: skip
        else:
            on_cupy = oracle_cupy(program, size)
            if on_cupy is None:
                print(f"{size}²: no CuPy for the oracle, skipped", file=sys.stderr)
                continue
            values, judge = on_cupy, "cupy float64"
        oracle_s = time.perf_counter() - start
        truth = to_pixels(values)
        for name, options in IMAGES.items():
            image = pj.render(program, size, **options)
            wrong = image != truth
            magnitudes = np.abs(values[wrong])
            row = {
                "size": size, "what": name, "oracle": judge, "oracle_s": round(oracle_s, 2),
                "differing": int(wrong.sum()),
                "differing_decided": int(np.count_nonzero(magnitudes >= BAND)),
                "max_abs_value_differing": float(magnitudes.max()) if magnitudes.size else 0.0,
            }  # fmt: skip
            report["rows"].append(row)
            print(row, file=sys.stderr)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(report, indent=2))
    print("| size | image | differing px | of which |value| ≥ 1e-5 | max |value| there |")
    print("|---|---|---|---|---|")
    for r in report["rows"]:
        if "differing" in r:
            print(f"| {r['size']} | {r['what']} | {r['differing']} | {r['differing_decided']} "
                  f"| {r['max_abs_value_differing']:.2e} |")  # fmt: skip


if __name__ == "__main__":
    main()
