"""Scaling of compile and run time, per compilation strategy: vs program length, vs image size.

``--what length``: programs from the shape builder (:mod:`prospero_jax.ir.shapes`): the union
of ``n`` random discs with holes (:func:`model`), from about 100 to 100,000 instructions,
each rendered at 256² in float32 by every mode. ``--what size``: prospero at sizes 128²
to 4096² by every mode. Each (mode, program) is one ``pj.bench`` run (the same numbers as
``prospero bench``) in a fresh worker process, killed after ``--timeout`` seconds (its
row then says so), one at a time. Results go to ``experiments/results/scaling_*.json``.
A worker's address space is capped at 12 GiB (:data:`MEMORY_LIMIT`), so a compile that
needs more fails (its row says so) rather than exhausting the machine. ``--what plot``
draws ``experiments/figures/scaling_*.png`` from them.

    python experiments/scaling.py --what length
    python experiments/scaling.py --what size
    python experiments/scaling.py --what plot
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
FIGURES = ROOT / "experiments" / "figures"
PROSPERO = ROOT.parent / "shared" / "prospero.vm"
LENGTHS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
SIZES = (128, 256, 512, 1024, 2048, 4096)
MODES = ("unrolled", "chunked", "interpreter", "eager", "culled")
#: Largest image per mode in the size study (the slow modes stop earlier).
SIZE_LIMIT = {"interpreter": 2048, "eager": 1024}
#: Address space of a worker (bytes).
MEMORY_LIMIT = 12 << 30


def model(length: int):  # type: ignore[no-untyped-def]
    """A program of about ``length`` instructions: a union of random discs with holes."""
    import numpy as np

    from prospero_jax import shapes

    rng = np.random.default_rng(length)
    n = max(1, length // 18)  # a disc with a hole is 18 instructions with its union
    discs = []
    radii = rng.uniform(0.02, 0.3, n) / max(1.0, np.sqrt(n) / 4)  # denser: smaller
    for cx, cy, r in zip(rng.uniform(-0.9, 0.9, n), rng.uniform(-0.9, 0.9, n), radii, strict=True):
        hole = shapes.circle(cx + r / 3, cy, r / 3)
        discs.append(shapes.difference(shapes.circle(cx, cy, r), hole))
    return shapes.to_program(shapes.union(*discs), f"discs-{length}")


def worker(what: str, mode: str, arg: int) -> dict[str, Any]:
    import resource

    import prospero_jax as pj

    # A compile that needs more fails with std::bad_alloc instead of waking the OOM killer.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    if what == "length":
        program, sizes, oracle_max = model(arg), [256], 256
    else:
        program, sizes, oracle_max = pj.load(PROSPERO), [arg], 1024
    report = pj.bench(
        program, sizes, modes=[mode], repeats=3, budget_s=10.0, oracle_max=oracle_max,
        warm=False, export=False, command=" ".join(sys.argv),
    )  # fmt: skip
    (row,) = report["results"]
    return {
        "what": what,
        "mode": mode,
        "arg": arg,
        "instructions": report["program"]["instructions"],
        "size": sizes[0],
        "staging_s": row["trace_s"] + row["lower_s"] + row["compile_s"],
        "compile_s": row["compile_s"],
        "first_run_s": row["first_run_s"],
        "steady_s": row["steady"]["median_s"],
        "oracle_s": report["oracle"][0].get("median_s"),
        "pixels_differing": row["pixels_differing"],
        "peak_rss_mb": row["peak_rss_mb"],
        "jax": report["jax"],
        "machine": report["machine"]["processor"],
    }


def study(what: str, modes: list[str], timeout: float) -> None:
    args = LENGTHS if what == "length" else SIZES
    rows = []
    out = RESULTS / f"scaling_{what}.json"
    for mode in modes:
        for arg in args:
            if what == "size" and arg > SIZE_LIMIT.get(mode, max(SIZES)):
                continue
            command = [sys.executable, __file__, "--worker", what, mode, str(arg)]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rows.append({"what": what, "mode": mode, "arg": arg, "timeout_s": timeout})
                print(f"{mode} {arg}: stopped after {timeout:.0f} s", file=sys.stderr)
                continue
            if done.returncode != 0:
                lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
                rows.append({"what": what, "mode": mode, "arg": arg, "failed": lines[-1]})
                print(f"{mode} {arg}: failed: {lines[-1]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.splitlines()[-1]))
            print(f"{mode} {arg}: {rows[-1]}", file=sys.stderr)
            RESULTS.mkdir(exist_ok=True)
            out.write_text(json.dumps(rows, indent=1))
    out.write_text(json.dumps(rows, indent=1))
    table(rows)


def table(rows: list[dict[str, Any]]) -> None:
    print("| mode | program | instructions | size | staging (s) | first run (s) | steady (s) "
          "| × oracle | pixels ≠ oracle |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "steady_s" not in r:
            stopped = r.get("failed") or f"stopped after {r['timeout_s']:.0f} s"
            print(f"| {r['mode']} | {r['arg']} | | | {stopped} | | | | |")
            continue
        ratio = f"{r['oracle_s'] / r['steady_s']:.1f}×" if r["oracle_s"] else "-"
        print(
            f"| {r['mode']} | {r['arg']} | {r['instructions']:,} | {r['size']}² "
            f"| {r['staging_s']:.2f} | {r['first_run_s']:.3f} | {r['steady_s']:.4f} "
            f"| {ratio} | {r['pixels_differing'] if r['pixels_differing'] is not None else '-'} |"
        )


def plot() -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(exist_ok=True)
    for what, xlabel in (("length", "program length (instructions)"), ("size", "image side (px)")):
        path = RESULTS / f"scaling_{what}.json"
        if not path.exists():
            continue
        everything = json.loads(path.read_text())
        rows = [r for r in everything if "steady_s" in r]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        key = "instructions" if what == "length" else "size"
        for mode in MODES:
            mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r[key])
            if not mine:
                continue
            xs = [r[key] for r in mine]
            axes[0].plot(xs, [r["staging_s"] for r in mine], "o-", label=mode)
            axes[1].plot(xs, [r["steady_s"] for r in mine], "o-", label=mode)
        timed: dict[int, list[float]] = {}
        for r in rows:
            if r.get("oracle_s"):
                timed.setdefault(r[key], []).append(r["oracle_s"])
        if timed:  # every worker timed the oracle: its median per program or size
            xs = sorted(timed)
            ys = [statistics.median(timed[x]) for x in xs]
            axes[1].plot(xs, ys, "k--", label="NumPy oracle (f64), median")
        failed = [r for r in everything if "steady_s" not in r]
        if failed:
            notes = "; ".join(
                f"{r['mode']} at {r['arg']:,}: {r.get('failed', '').strip() or 'timed out'}"
                for r in failed
            )
            fig.text(0.01, 0.01, f"no result: {notes}", fontsize=7, wrap=True)
        axes[0].set_title("trace + lower + compile (cold)")
        axes[1].set_title("steady render (median)")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("seconds")
            ax.grid(True, which="both", alpha=0.3)
            if what == "size":
                ax.set_xticks(SIZES, [str(n) for n in SIZES])
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axes[1].legend(fontsize=8)
        subject = "discs models at 256²" if what == "length" else "prospero.vm"
        fig.suptitle(f"{subject}, float32, CPU ({rows[0]['machine']}), jax {rows[0]['jax']}")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        fig.savefig(FIGURES / f"scaling_{what}.png", dpi=110)
        print(f"wrote {FIGURES / f'scaling_{what}.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=("length", "size", "plot", "table"), default="length")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        what, mode, arg = args.worker
        print(json.dumps(worker(what, mode, int(arg))))
    elif args.what == "plot":
        plot()
    elif args.what == "table":
        for what in ("length", "size"):
            path = RESULTS / f"scaling_{what}.json"
            if path.exists():
                table(json.loads(path.read_text()))
    else:
        study(args.what, args.modes.split(","), args.timeout)


if __name__ == "__main__":
    main()
