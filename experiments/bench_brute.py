"""Brute-force rendering, side by side with the float64 NumPy-GC oracle, in one run.

Each (method, size) runs in a fresh worker process, one at a time, so that compile times
are cold (JAX's persistent cache is off), peak RSS is the method's own, and nothing else of
ours competes for the CPU. A worker renders ``repeats`` times and reports every wall time.

    python experiments/bench_brute.py --sizes 1024 --repeats 5
    python experiments/bench_brute.py --sizes 16384 --methods jax-float32 --repeats 1

Prints a Markdown table: first call (compile + run), steady median (min-max), peak RSS,
and each method's speed-up over the oracle at the same size.
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

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT.parent / "shared" / "prospero.vm"
METHODS = ("oracle", "jax-float32", "jax-float64")


def worker(method: str, size: int, repeats: int, program_path: Path) -> dict[str, object]:
    import jax

    import prospero_jax as pj

    program = pj.load(program_path)
    if method == "oracle":

        def once() -> object:
            return pj.reference.render(program, size)
    else:
        dtype = method.removeprefix("jax-")

        def once() -> object:
            return pj.render(program, size, dtype=dtype)

    times = []
    for _ in range(repeats + (method != "oracle")):  # JAX: the first call compiles
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    first = times.pop(0) if method != "oracle" else None
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
    print("| " + " | ".join([*columns, "peak RSS (MB)", "vs oracle"]) + " |")
    print("|---|---|---|---|---|---|")
    oracle = {r["size"]: statistics.median(r["times_s"]) for r in rows if r["method"] == "oracle"}
    for r in rows:
        med = statistics.median(r["times_s"])
        ratio = f"{oracle[r['size']] / med:.1f}×" if r["size"] in oracle else "n/a"
        first = f"{r['first_s']:.2f}" if r["first_s"] is not None else "-"
        spread = f"{min(r['times_s']):.3f}-{max(r['times_s']):.3f}"
        print(
            f"| {r['method']} | {r['size']}² | {first} | {med:.3f} [{spread}] "
            f"| {r['peak_rss_mb']:.0f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
