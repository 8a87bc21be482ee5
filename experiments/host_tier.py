"""The host tier against the XLA kernels, alternated in one process: frame times, and when
readying the kernels repays itself.

    python experiments/host_tier.py --program ../shared/prospero.vm --sizes 512,1024,2048 --rounds 7

Each round renders every size on both tiers (``tier="host"``, ``tier="kernels"``; culled,
float32, the sign program; the kernels compiled before the first round), so the two share
the machine's moods. Also the host tier's levels and leaves at each size (``stats``).
Prints a Markdown table: medians with [min–max], the ratio, and how many frames the
kernels need to repay loading their stored executables (``KERNEL_PRICE["stored"]``) or
compiling them (``["missing"]``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import prospero_jax as pj
from prospero_jax.renderers import hierarchy
from prospero_jax.renderers.culled import render_culled
from prospero_jax.renderers.view import Target, View

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", default=str(ROOT.parent / "shared" / "prospero.vm"))
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    program = pj.load(args.program)
    sizes = [int(s) for s in args.sizes.split(",")]
    tiers = {"host": Target(tier="host"), "kernels": Target(tier="kernels")}
    for size in sizes:  # compile and check once: the tiers must agree bit for bit
        images = [pj.render(program, size, mode="culled", target=t) for t in tiers.values()]
        assert np.array_equal(*images), size
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for size in sizes:
            for name, target in tiers.items():
                start = time.perf_counter()
                pj.render(program, size, mode="culled", target=target)
                times.setdefault((name, size), []).append(time.perf_counter() - start)
    print(f"{Path(args.program).name}, culled, float32, {args.rounds} alternated rounds (ms)\n")
    print("| size | host tier | kernels | host ÷ kernels | frames to repay loading | compiling |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        host, kernels = (times[(name, size)] for name in tiers)
        h, k = statistics.median(host), statistics.median(kernels)
        repay = {
            state: hierarchy.KERNEL_PRICE[state] / (h - k) if h > k else 0.0
            for state in ("stored", "missing")
        }
        print(
            f"| {size}² | {1e3 * h:.1f} [{1e3 * min(host):.1f}–{1e3 * max(host):.1f}] "
            f"| {1e3 * k:.1f} [{1e3 * min(kernels):.1f}–{1e3 * max(kernels):.1f}] "
            f"| {h / k:.1f} | {repay['stored']:.0f} | {repay['missing']:.0f} |"
        )
    print("\nThe host tier's levels, one frame each: children's side, ms (rows)\n")
    for size in sizes:
        stats: list[dict[str, object]] = []
        render_culled(pj.specialise(program), View(size), tiers["host"], stats=stats)
        cells = [
            f"{s['tile']} px: {1e3 * float(s['seconds']):.1f} ({s['rows']} rows)"  # type: ignore[arg-type]
            for s in stats
        ]
        print(f"- {size}²: " + "; ".join(cells))


if __name__ == "__main__":
    main()
