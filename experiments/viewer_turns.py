"""The viewer turning a solid: each new view's draw, as the server makes it, in one process.

    python experiments/viewer_turns.py --models bear --size 256 --views 12

For each model, what `prospero view`'s render thread does for a solid (``viewer/server.py``,
``_draw``): ``pj.render_heightmap(program, View(size, region, rotation=rotation(turn,
tilt)), target=Target(tier=TIER))`` (the server's solids' tier, ``"compiled"``: the
compiled closures bought at the first view; ``--tier auto`` rents them as a one-off render
does) then ``pj.shade_heightmap(..., "lit")``, with the turn stepping by 7° and the tilt
by 3° so that every view is new (a rotated program: nothing reused but the kernels and
the compiled leaf tier, which every turned view of a model shares). Two views first (they
compile or load the kernels, and on the ``"compiled"`` tier the closures: their times are
printed apart), then ``--views`` timed ones: median, 95th percentile and worst, and the
first timed view after which every view used the compiled leaf tier.
With the compilation cache on, as ``prospero view`` runs (``--no-cache``: off, so every
compile is paid in this process). Regions as in ``libfive_peer.py`` (bear ±1.5,
tanglecube ±3). The browser's own share (PNG encode, transfer, decode) is not included:
see ``viewer_latency.py`` for the whole path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import prospero_jax as pj
from prospero_jax.renderers import compiled_tier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from libfive_peer import HALF, MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bear,colonnade,tanglecube")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--no-cache", action="store_true", help="compilation cache off")
    parser.add_argument("--tier", default="compiled", help="the Target's tier (the viewer's)")
    args = parser.parse_args()
    if not args.no_cache:
        pj.enable_compilation_cache()
    print(
        f"tier {args.tier}\n\n| model | size | first two views (ms) | views | median (ms) "
        "| p95 (ms) | worst (ms) | compiled from view | median from then (ms) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for name in args.models.split(","):
        program = pj.load(MODELS / f"{name}.vm")
        half = HALF.get(name, 1.0)
        times, tiers, first = [], [], []
        target = pj.Target(tier=args.tier)
        for i in range(args.views + 2):
            turn, tilt = 20.0 + 7.0 * i, -25.0 + 3.0 * i
            view = pj.View(args.size, (-half, half, -half, half), rotation=pj.rotation(turn, tilt))
            compiled = compiled_tier.firsts
            calls: list[int] = []
            compiled_tier.firsts = lambda *a, c=compiled, n=calls: n.append(1) or c(*a)  # type: ignore[assignment]
            started = time.perf_counter()
            pj.shade_heightmap(pj.render_heightmap(program, view, target=target), "lit")
            compiled_tier.firsts = compiled  # type: ignore[assignment]
            if i < 2:
                first.append(f"{1e3 * (time.perf_counter() - started):.0f}")
            else:
                times.append(1e3 * (time.perf_counter() - started))
                tiers.append(bool(calls))
        p95 = float(np.percentile(times, 95))
        bought = next((k for k in range(len(tiers)) if all(tiers[k:])), None)
        after = "–" if bought is None else f"{statistics.median(times[bought:]):.0f}"
        print(
            f"| {name} | {args.size}² | {', '.join(first)} | {len(times)} "
            f"| {statistics.median(times):.0f} "
            f"| {p95:.0f} | {max(times):.0f} | {'never' if bought is None else bought + 1} "
            f"| {after} |"
        )


if __name__ == "__main__":
    main()
