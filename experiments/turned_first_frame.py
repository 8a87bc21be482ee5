"""A turned 2-D render's first frame and a new turn's, in fresh processes, alternated.

    python experiments/turned_first_frame.py --rounds 2 --before /tmp/before

Each round starts a fresh process per tree (this checkout, and with ``--before TREE``
another, e.g. ``git worktree add /tmp/before COMMIT``), JAX's compilation cache off, that
renders prospero at ``--size`` turned 20° (``pj.render(program, size, rotation=...)``:
the first frame, everything it derives or compiles included), then turned 25° (a new
turn). Prints each process's two times and the share of pixels inside.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT.parent / "shared" / "prospero.vm"

WORKER = """
import json, sys, time
import prospero_jax as pj
program = pj.load(sys.argv[1])
size = int(sys.argv[2])
started = time.perf_counter()
first = pj.render(program, size, rotation=pj.rotation(20.0, 0.0))
turned = time.perf_counter()
pj.render(program, size, rotation=pj.rotation(25.0, 0.0))
done = time.perf_counter()
print(json.dumps({"first_s": turned - started, "new_turn_s": done - turned,
                  "inside": float((first > 0).mean())}))
"""


def run(tree: str | None, size: int) -> dict[str, float]:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    if tree is not None:
        env["PYTHONPATH"] = tree
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(PROGRAM), str(size)],
        capture_output=True, text=True, check=True, env=env, cwd=tree or "/",
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", help="also time another checkout")
    args = parser.parse_args()
    trees = {"ours": None} | ({"before": args.before} if args.before else {})
    for r in range(args.rounds):
        for name, tree in trees.items():
            got = run(tree, args.size)
            print(
                f"round {r + 1} {name}: first turned frame {got['first_s']:.2f} s, "
                f"a new turn {got['new_turn_s']:.2f} s, inside {got['inside']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
