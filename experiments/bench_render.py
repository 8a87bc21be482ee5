"""Render timings, every method side by side with the float64 NumPy-GC references, in one run.

Methods: ``oracle`` (the project's float64 NumPy interpreter with liveness GC, which keeps
x as a row and y as a column), ``seed`` (the challenge's reference algorithm: full
meshgrid arrays, each value deleted after its last use), and ``MODE-DTYPE`` for the JAX
renderer (``brute-float32``, ``culled-float32``, ...).

Each (method, size) runs in a fresh worker process, one at a time, so that compile times
are cold (JAX's persistent cache is off), peak RSS is the method's own, and nothing else of
ours competes for the CPU. A worker renders ``repeats`` times and reports every wall time.

    python experiments/bench_render.py --sizes 256,1024 --repeats 7
    python experiments/bench_render.py --sizes 4096,16384 --methods culled-float32 --repeats 3

Prints a Markdown table: first call (compile + run), steady median (min-max), peak RSS,
and each method's speed-up over ``seed`` and ``oracle`` at the same size.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT.parent / "shared" / "prospero.vm"
METHODS = ("seed", "oracle", "brute-float32", "culled-float32")
REFERENCES = ("seed", "oracle")


def seed_render(text: str, size: int, xp: Any = None, dtype: str = "float64") -> Any:
    """The challenge's NumPy reference, with liveness GC: full arrays, prospero's ops.

    ``xp`` is the array module (NumPy by default; CuPy runs it one GPU kernel per
    instruction, the challenge seed's GPU approach); the result is ``xp``'s array.
    """
    import numpy

    np = xp or numpy
    lines = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    last = {arg: i for i, (_, _, *args) in enumerate(lines) for arg in args}
    s = np.linspace(-1, 1, size, dtype=dtype)
    x, y = np.meshgrid(s, -s)
    v: dict[str, object] = {}
    binary = {"add": np.add, "sub": np.subtract, "mul": np.multiply}
    binary |= {"max": np.maximum, "min": np.minimum}
    unary = {"neg": np.negative, "square": np.square, "sqrt": np.sqrt}
    for i, (out, op, *args) in enumerate(lines):
        if op == "var-x":
            v[out] = x
        elif op == "var-y":
            v[out] = y
        elif op == "const":
            v[out] = np.asarray(float(args[0]), dtype)
        elif op in binary:
            v[out] = binary[op](v[args[0]], v[args[1]])
        else:
            v[out] = unary[op](v[args[0]])
        for arg in args:
            if last.get(arg) == i and arg in v:
                del v[arg]
    return np.where(v[lines[-1][0]] < 0, 255, 0).astype(np.uint8)


def worker(method: str, size: int, repeats: int, program_path: Path) -> dict[str, object]:
    import jax

    import prospero_jax as pj

    program = pj.load(program_path)
    compiled = method not in REFERENCES
    if method == "seed":
        text = program_path.read_text()

        def once() -> object:
            return seed_render(text, size)
    elif method == "oracle":

        def once() -> object:
            return pj.reference.render(program, size)
    else:
        mode, dtype = method.split("-")

        def once() -> object:
            return pj.render(program, size, dtype=dtype, mode=mode)

    times = []
    for _ in range(repeats + compiled):  # JAX: the first call compiles
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    first = times.pop(0) if compiled else None
    return {
        "method": method,
        "size": size,
        "first_s": first,
        "times_s": times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "jax": jax.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--program", type=Path, default=PROGRAM)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, int(args.sizes), args.repeats, args.program)
        print(json.dumps(result))
        return

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for method in args.methods.split(","):
            out = subprocess.run(
                [
                    *(sys.executable, __file__, "--worker", method, "--sizes", str(size)),
                    *("--repeats", str(args.repeats), "--program", str(args.program)),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.splitlines()[-1]))
            print(f"done {method} {size}", file=sys.stderr)

    print(f"machine: {platform.machine()}, {platform.processor() or platform.platform()}; ")
    print(f"jax {rows[0]['jax']}; program {args.program.name}; repeats {args.repeats}\n")
    columns = ["method", "size", "first call (s)", "steady median (s) [min-max]"]
    print("| " + " | ".join([*columns, "peak RSS (MB)", "vs seed", "vs oracle"]) + " |")
    print("|---|---|---|---|---|---|---|")
    reference = {
        (r["method"], r["size"]): statistics.median(r["times_s"])
        for r in rows
        if r["method"] in REFERENCES
    }
    for r in rows:
        med = statistics.median(r["times_s"])
        ratios = [
            f"{reference[name, r['size']] / med:.1f}×" if (name, r["size"]) in reference else "-"
            for name in REFERENCES
        ]
        first = f"{r['first_s']:.2f}" if r["first_s"] is not None else "-"
        spread = f"{min(r['times_s']):.4f}-{max(r['times_s']):.4f}"
        print(
            f"| {r['method']} | {r['size']}² | {first} | {med:.4f} [{spread}] "
            f"| {r['peak_rss_mb']:.0f} | {' | '.join(ratios)} |"
        )


if __name__ == "__main__":
    main()
