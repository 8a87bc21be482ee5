"""Does XLA:GPU fuse the unrolled closure? Brute force with and without the seal.

The brute-force closure (:func:`prospero_jax.evaluators.lower.to_function`) passes every
value through ``lax.optimization_barrier`` (the *seal*), so XLA cannot rewrite across
instructions. On CPU the barriers are gone before fusion and the tape is one loop; on the
H200 the first GPU check measured ~2.7 µs per tape row at every size, the cost of a kernel
per instruction. This times, on whatever device JAX has, prospero's image through the
sealed closure and through the same closure unsealed (``seal=None``: XLA free to fuse
and to rewrite; ``unsealed-norewrites``: and XLA's algebraic simplifier off,
``brute.NO_REWRITES``, as the renderers do), each jitted for the whole image: compile
time, steady frame (median of ``--repeats``), kernels in the optimised module, and the
pixels that differ from the float64 oracle of the program (how many where |f64| ≥ 1e-5:
the default's contract).

    python experiments/gpu_fusion.py --sizes 1024,4096 --out results/gpu_fusion.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import prospero_jax as pj
from prospero_jax.evaluators.lower import constant_array, sealed
from prospero_jax.evaluators.unroll import plan, run
from prospero_jax.ir.passes import simplify
from prospero_jax.renderers.brute import NO_REWRITES
from prospero_jax.renderers.view import DEFAULT_REGION, axes

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PROSPERO_SHARED", ROOT.parent / "shared"))
BAND = 1e-5


def closure(program: pj.Program, seal: bool, options: dict[str, str] | None = None) -> Any:
    """The image's values as one jitted function of the pixel axes (``options``: XLA's)."""
    steps = plan(program)

    def image(xs: jax.Array, ys: jax.Array) -> jax.Array:
        x, y = jnp.broadcast_arrays(xs[None, :], ys[:, None])
        return run(
            steps, jnp, x, y, jnp.zeros_like(x),
            lambda _, c: constant_array(c, np.float32), sealed(x.shape) if seal else None,
        )  # fmt: skip

    return jax.jit(image, compiler_options=options)


def kernels(text: str) -> int:
    """Kernel launches in an optimised HLO module: fusions and custom calls in the entry."""
    entry = text[text.find("ENTRY") :]
    return len(re.findall(r"^[^\n]* = [^\n]*\b(?:fusion|custom-call)\(", entry, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--oracle-max", type=int, default=1024)
    parser.add_argument("--variants", default="sealed,unsealed")
    parser.add_argument("--program", type=Path, default=SHARED / "prospero.vm")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    program = simplify(pj.load(args.program))
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"device": str(jax.devices()[0]), "rows": rows}))

    for size in (int(s) for s in args.sizes.split(",")):
        xs_np, ys_np = axes(size, DEFAULT_REGION)
        xs, ys = jnp.asarray(xs_np, jnp.float32), jnp.asarray(ys_np, jnp.float32)
        truth = None
        if size <= args.oracle_max:
            truth = np.broadcast_to(
                run(plan(program), np, xs_np[None, :], ys_np[:, None], np.float64(0.0),
                    lambda _, c: np.float64(c)),
                (size, size),
            )  # fmt: skip
        for variant in args.variants.split(","):
            options = NO_REWRITES if variant == "unsealed-norewrites" else None
            f = closure(program, variant == "sealed", options)
            t0 = time.perf_counter()
            lowered = f.lower(xs, ys)
            t1 = time.perf_counter()
            compiled = lowered.compile()
            t2 = time.perf_counter()
            times = []
            for _ in range(args.repeats):
                s = time.perf_counter()
                value = compiled(xs, ys).block_until_ready()
                times.append(time.perf_counter() - s)
            row: dict[str, Any] = {
                "size": size, "variant": variant, "trace_lower_s": round(t1 - t0, 3),
                "compile_s": round(t2 - t1, 3), "frame_ms": round(1e3 * float(np.median(times)), 3),
                "frame_ms_min_max": [round(1e3 * min(times), 3), round(1e3 * max(times), 3)],
                "kernels": kernels(compiled.as_text()),
            }  # fmt: skip
            if truth is not None:
                ours = np.asarray(value) < 0
                differ = ours != (truth < 0)
                row["pixels_differ"] = int(differ.sum())
                row["differ_beyond_band"] = int((differ & (np.abs(truth) >= BAND)).sum())
                row["largest_differing_f64"] = float(np.abs(truth[differ]).max(initial=0.0))
            emit(row)


if __name__ == "__main__":
    main()
