"""Compile time of derivatives: the unrolled dual closure against the dual interpreter.

For prefixes of prospero (its first N instructions, their partial shapes joined by
``min``) and for
the whole program, each (method, N) in a fresh worker process with JAX's persistent cache
off, so compile times are cold. A worker builds ``jax.jit(jax.vmap(jax.grad(f, (0, 1))))``
over 4,096 points in float32, then times: trace + lower, XLA compile, first call, and the
median of 5 steady calls. ``--what constants`` differentiates a loss with respect to the
program's constants (``to_parametric``) instead; ``--what normals`` times the CLI's
normals render (binary render + gradients in the outline band) at 1024².

    python experiments/gradient_compile.py --sizes 250,500,1000,2000,all
    python experiments/gradient_compile.py --sizes all --what constants
    python experiments/gradient_compile.py --what normals

Prints a Markdown table. ``--timeout`` (seconds, default 300) stops a worker that takes
longer; its row says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT.parent / "shared" / "prospero.vm"
POINTS = 4096


def prefix(program, n):  # type: ignore[no-untyped-def]
    """The program's first ``n`` instructions, joined by ``min`` into one value.

    Every value of the prefix that no later instruction of the prefix uses (the roots of
    its partial sub-trees) goes into a chain of ``min``: the field of the shapes drawn so
    far, which depends on all ``n`` instructions.
    """
    import prospero_jax as pj

    if n >= len(program):
        return program
    lines = program.to_vm().splitlines()[:n]
    used = set(program.args[:n].ravel().tolist())
    dangling = [i for i in range(n) if i not in used and pj.OPS[program.opcodes[i]].name != "const"]
    name = program.ids
    acc = name[dangling[0]]
    for k, i in enumerate(dangling[1:]):
        lines.append(f"_join{k} min {acc} {name[i]}")
        acc = f"_join{k}"
    return pj.parse("\n".join(lines), source=f"prospero[:{n}]")


def worker(what: str, method: str, size: str) -> dict[str, object]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import prospero_jax as pj

    program = pj.load(PROGRAM)
    n = len(program) if size == "all" else int(size)
    tape = pj.simplify(prefix(program, n))
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(v, jnp.float32) for v in rng.uniform(-1, 1, (2, POINTS)))
    out: dict[str, object] = {"method": method, "rows": len(tape), "what": what}
    if what == "normals":
        started = time.perf_counter()
        samples = pj.sample_gradient(program, 1024, band=3)
        out["first"] = time.perf_counter() - started
        steady = []
        for _ in range(3):
            started = time.perf_counter()
            pj.sample_gradient(program, 1024, band=3)
            steady.append(time.perf_counter() - started)
        out["steady"] = statistics.median(steady)
        out["points"] = int(samples.evaluated.sum())
        return out
    if what == "xy":
        f = pj.to_function(tape, derivatives=method)  # type: ignore[arg-type]
        fn = jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1))))
        args: tuple[object, ...] = (x, y)
    else:
        g, constants = pj.to_parametric(tape, derivatives=method)  # type: ignore[arg-type]

        def loss(c: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
            return jnp.mean(jax.nn.sigmoid(-g(c, x, y) * 50.0))

        fn = jax.jit(jax.grad(loss))
        args = (constants, x, y)
    started = time.perf_counter()
    lowered = fn.lower(*args)
    out["lower"] = time.perf_counter() - started
    started = time.perf_counter()
    compiled = lowered.compile()
    out["compile"] = time.perf_counter() - started
    started = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    out["first"] = time.perf_counter() - started
    steady = []
    for _ in range(5):
        started = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        steady.append(time.perf_counter() - started)
    out["steady"] = statistics.median(steady)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,500,1000,2000,all")
    parser.add_argument("--methods", default="unrolled,interpreter")
    parser.add_argument("--what", choices=("xy", "constants", "normals"), default="xy")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    import jax

    print(f"jax {jax.__version__}, {POINTS} points, float32, cold (no persistent cache)\n")
    if args.what == "normals":
        rows = [("interpreter", "all")]
        print("| what | band points | first call (s) | steady median (s) |")
        print("|---|---|---|---|")
    else:
        rows = [(m, s) for s in args.sizes.split(",") for m in args.methods.split(",")]
        print("| method | rows | trace + lower (s) | compile (s) | first call (s) | steady (s) |")
        print("|---|---|---|---|---|---|")
    for method, size in rows:
        command = [sys.executable, __file__, "--worker", args.what, method, size]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.timeout, check=True
            )
        except subprocess.TimeoutExpired:
            print(f"| {method} | {size} | > {args.timeout:.0f} s: stopped | | | |", flush=True)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        if args.what == "normals":
            print(f"| normals 1024² | {r['points']:,} | {r['first']:.2f} | {r['steady']:.2f} |")
        else:
            print(
                f"| {method} | {r['rows']:,} | {r['lower']:.2f} | {r['compile']:.2f} | "
                f"{r['first']:.3f} | {r['steady']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
