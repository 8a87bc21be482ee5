"""Heightmap normals, the two paths alternated in one run: pruned tapes (``grouped_gradients``,
the CPU default) against the whole program (``gradients_at``).

    python experiments/normals_paths.py --size 512 --rounds 5

Per model: ``render_heightmap(model, size)`` with normals, after a warm-up of each path,
the paths alternated ``rounds`` times; medians and worst times, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import prospero_jax as pj
from prospero_jax.renderers import gradients

MODELS = Path(__file__).resolve().parent.parent.parent / "shared" / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    default = gradients.GROUPED_ROWS
    paths = {"pruned tapes": range(1, 1 << 30), "whole program": range(0)}
    print("| model | pruned tapes: median (worst) | whole program: median (worst) | ratio |")
    print("|---|---|---|---|")
    for name in ("colonnade", "bear", "tanglecube"):
        program = pj.load(MODELS / f"{name}.vm")
        times: dict[str, list[float]] = {path: [] for path in paths}
        for round_ in range(args.rounds + 1):
            for path, rows in paths.items():
                gradients.GROUPED_ROWS = rows
                start = time.perf_counter()
                pj.render_heightmap(program, args.size)
                if round_:  # the first round warms both paths up
                    times[path].append(time.perf_counter() - start)
        gradients.GROUPED_ROWS = default
        tiles, whole = (statistics.median(times[p]) for p in paths)
        worst = [max(times[p]) for p in paths]
        print(
            f"| {name} | {tiles:.2f} s ({worst[0]:.2f}) | {whole:.2f} s ({worst[1]:.2f}) | "
            f"{tiles / whole:.2f} |"
        )


if __name__ == "__main__":
    main()
