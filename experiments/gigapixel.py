"""A 65536² (4.3-gigapixel) streamed render: time, peak RSS, interruption and resume, spot checks.

    python experiments/gigapixel.py ../shared/prospero.vm --size 65536 --out /tmp/giga \\
        --json experiments/results/gigapixel.json

Runs, one after another, each as a fresh `prospero render` process (wall time and peak
RSS of that process, from the kernel's rusage):

1. the PGM, uninterrupted;
2. the PNG, uninterrupted;
3. the PNG again, killed with SIGKILL after ``--kill-after`` seconds (no clean-up at all:
   the hardest interruption), then the same command again, which resumes; its file must
   equal run 2's byte for byte, and no partial files may be left;
4. spot checks of the PGM against the float64 oracle, in ``--windows`` windows of 256²
   pixels on the outline (where pixels could differ), and the PNG decoded band by band
   against the PGM.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np

import prospero_jax as pj


def run(command: list[str], kill_after: float | None = None) -> dict[str, float | int | None]:
    """Run ``command`` (SIGKILLed after ``kill_after`` s if given): exit, wall s, peak RSS."""
    start = time.perf_counter()
    child = subprocess.Popen(command)
    timer = threading.Timer(kill_after, child.kill) if kill_after else None
    if timer:
        timer.start()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
    child.returncode = os.waitstatus_to_exitcode(status)
    if timer:
        timer.cancel()
    wall = time.perf_counter() - start
    return {
        "exit": child.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": usage.ru_maxrss // 1024,
    }


def png_rows(path: Path) -> Iterator[bytes]:
    """The decompressed scanlines (filter byte + pixels) of a PNG, in pieces."""
    data = path.read_bytes()
    pos, idat = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    decompressor = zlib.decompressobj()
    for chunk in idat:
        yield decompressor.decompress(chunk)
    yield decompressor.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", type=Path)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--out", type=Path, default=Path("/tmp/giga"))
    parser.add_argument("--kill-after", type=float, default=15.0)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--band-rows", type=int, help="passed on (default: the CLI's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pgm, png, resumed = (args.out / f"image.{s}" for s in ("pgm", "png", "resumed.png"))
    for path in (pgm, png, resumed, *pj.partial_paths(resumed)):
        path.unlink(missing_ok=True)
    base = ["prospero", "render", str(args.program), "--size", str(args.size)]
    if args.band_rows:
        base += ["--band-rows", str(args.band_rows)]
    report: dict[str, object] = {"size": args.size, "program": str(args.program)}

    report["pgm"] = run([*base, "-o", str(pgm)])
    report["png"] = run([*base, "-o", str(png)])
    killed = run([*base, "-o", str(resumed)], kill_after=args.kill_after)
    journal = pj.partial_paths(resumed)[1]
    bands_before = len(json.loads(journal.read_text())["done"]) if journal.exists() else None
    report["killed"] = {**killed, "bands_written": bands_before}
    report["resume"] = run([*base, "-o", str(resumed)])
    report["resumed_equals_uninterrupted"] = filecmp.cmp(png, resumed, shallow=False)
    report["partial_files_left"] = [str(p) for p in pj.partial_paths(resumed) if p.exists()]
    report["sizes_bytes"] = {p.name: p.stat().st_size for p in (pgm, png)}

    # Spot checks: windows centred on outline pixels of a coarse render, vs the oracle.
    program = pj.load(args.program)
    image = np.memmap(pgm, np.uint8, "r", offset=pgm.stat().st_size - args.size**2)
    image = image.reshape(args.size, args.size)
    coarse = pj.render(program, 256)
    edge = np.argwhere(coarse[1:, :] != coarse[:-1, :])
    rng = np.random.default_rng(0)
    xs, ys = pj.reference.axes(args.size)
    checks = []
    for r, c in edge[rng.choice(len(edge), args.windows, replace=False)]:
        r0 = min(int(r) * args.size // 256, args.size - 256)
        c0 = min(int(c) * args.size // 256, args.size - 256)
        values = pj.reference.evaluate(program, xs[None, c0 : c0 + 256], ys[r0 : r0 + 256, None])
        window = image[r0 : r0 + 256, c0 : c0 + 256]
        differ = window != pj.reference.to_pixels(values)
        checks.append(
            {
                "row": r0,
                "col": c0,
                "inside": int((window > 0).sum()),
                "differ": int(differ.sum()),
                "max_abs_value_where_differ": float(np.abs(values[differ]).max())
                if differ.any()
                else None,
            }
        )
    report["oracle_windows"] = checks

    # The PNG decodes to the PGM's pixels.
    buffer, row, same = b"", 0, True
    for raw in png_rows(png):
        buffer += raw
        whole = len(buffer) // (args.size + 1)
        if whole:
            rows = np.frombuffer(buffer[: whole * (args.size + 1)], np.uint8).reshape(whole, -1)
            same &= bool(
                (rows[:, 0] == 0).all() and np.array_equal(rows[:, 1:], image[row : row + whole])
            )
            row += whole
            buffer = buffer[whole * (args.size + 1) :]
    report["png_equals_pgm"] = same and row == args.size
    report["machine"] = {"cpus": os.cpu_count(), "jax": jax.__version__}

    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    for path in (pgm, png, resumed):
        path.unlink(missing_ok=True)
    sys.exit(0 if report["resumed_equals_uninterrupted"] and report["png_equals_pgm"] else 1)


if __name__ == "__main__":
    main()
