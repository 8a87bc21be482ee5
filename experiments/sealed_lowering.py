"""Cost of sealing each value from XLA's algebraic simplifier (issue 12), side by side.

Builds prospero's brute-force tile kernel (256² tile, float32) with the lowering's seal
(``lax.optimization_barrier`` on every value: ``prospero_jax.evaluators.lower.sealed``) and
without it, and times tracing + lowering, XLA compilation (persistent cache off) and
steady runs, alternating the two variants, each in a fresh process.

    python experiments/sealed_lowering.py ../shared/prospero.vm --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def measure(path: str, sealed: bool) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    import prospero_jax as pj
    from prospero_jax.evaluators import lower as _lower
    from prospero_jax.evaluators import unroll as _unroll

    tape = pj.simplify(pj.load(path))
    steps = _unroll.plan(tape)

    def kernel(xs: jax.Array, ys: jax.Array) -> jax.Array:
        shape = (ys.shape[0], xs.shape[0])
        seal = _lower.sealed(shape) if sealed else None
        constant = lambda _, c: _lower.constant_array(c, xs.dtype)  # noqa: E731
        value = _unroll.run(steps, jnp, xs[None, :], ys[:, None], 0.0, constant, seal)
        return jnp.where(jnp.broadcast_to(value, shape) < 0, jnp.uint8(255), jnp.uint8(0))

    xs = jnp.linspace(-1, 1, 256, dtype=jnp.float32)
    start = time.perf_counter()
    lowered = jax.jit(kernel).lower(xs, xs)
    traced = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    compiled(xs, xs).block_until_ready()
    runs = []
    for _ in range(7):
        t = time.perf_counter()
        compiled(xs, xs).block_until_ready()
        runs.append(time.perf_counter() - t)
    return {
        "lower_s": traced - start,
        "compile_s": done - traced,
        "run_ms": 1e3 * float(np.median(runs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("program")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["sealed", "plain"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.program, args.child == "sealed")))
        return
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    rows: dict[str, list[dict[str, float]]] = {"sealed": [], "plain": []}
    for _ in range(args.rounds):
        for variant in rows:
            out = subprocess.run(
                [sys.executable, __file__, args.program, "--child", variant],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip
            rows[variant].append(json.loads(out.stdout.splitlines()[-1]))
    for variant, results in rows.items():
        medians = {k: float(np.median([r[k] for r in results])) for k in results[0]}
        print(variant, json.dumps(medians))


if __name__ == "__main__":
    main()
