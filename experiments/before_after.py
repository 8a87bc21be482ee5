"""Two checkouts side by side: render timings of an earlier commit against this tree.

Runs ``experiments/bench_render.py``'s worker (one fresh process per measurement, JAX's
persistent cache off) for each method, alternating between the two trees round after
round, each tree imported through ``PYTHONPATH``; prints the medians over rounds of each
worker's steady median and first call, and the after/before ratio.

    git worktree add /tmp/before <commit>
    python experiments/before_after.py /tmp/before --rounds 5 --size 1024
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT.parent / "shared" / "prospero.vm"


def run(tree: Path, method: str, size: int, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_ENABLE_COMPILATION_CACHE": "false"}
    script = tree / "experiments" / "bench_render.py"
    out = subprocess.run(
        [sys.executable, str(script), "--worker", method, "--sizes", str(size),
         "--repeats", str(repeats), "--program", str(PROGRAM)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    row = json.loads(out.stdout.splitlines()[-1])
    return {"steady": statistics.median(row["times_s"]), "first": row["first_s"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", type=Path, help="a checkout of the earlier commit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--methods", default="culled-float32,brute-float32")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": ROOT}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for method in args.methods.split(","):
            for name, tree in trees.items():
                results.setdefault((method, name), []).append(
                    run(tree, method, args.size, args.repeats)
                )
        print(f"round {round_ + 1} done", file=sys.stderr)
    print(
        f"prospero {args.size}², {args.rounds} alternated rounds, "
        f"{args.repeats} steady renders each"
    )
    print("| method | tree | steady median (ms) [min-max over rounds] | first call (s) |")
    print("|---|---|---|---|")
    for (method, name), rows in results.items():
        steady = [1e3 * r["steady"] for r in rows]
        first = statistics.median(r["first"] for r in rows)
        print(f"| {method} | {name} | {statistics.median(steady):.1f} "
              f"[{min(steady):.1f}-{max(steady):.1f}] | {first:.2f} |")  # fmt: skip
    for method in args.methods.split(","):
        after = statistics.median(r["steady"] for r in results[method, "after"])
        before = statistics.median(r["steady"] for r in results[method, "before"])
        print(f"{method}: after / before = {after / before:.3f}")


if __name__ == "__main__":
    main()
