"""One device against all local devices, side by side: steady render times and equality.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python experiments/sharded.py ../shared/prospero.vm --sizes 1024,4096 --repeats 5

For each mode (brute, culled) and size: the median of ``--repeats`` renders on the first
device and with ``devices="all"``, after one warm-up each, and whether the images are equal.
On a CPU with forced host devices the devices share the same cores, so this measures what
sharding costs or gains there, not a multi-GPU speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax

import prospero_jax as pj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", type=Path)
    parser.add_argument("--sizes", default="1024")
    parser.add_argument("--modes", default="culled,brute")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    program = pj.load(args.program)
    rows = []
    for mode in args.modes.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            images, times = {}, {}
            for devices in (None, "all"):
                label = "all" if devices else "one"
                images[label] = pj.render(program, size, mode=mode, devices=devices)
                runs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    pj.render(program, size, mode=mode, devices=devices)
                    runs.append(time.perf_counter() - start)
                times[label] = statistics.median(runs)
            rows.append(
                {
                    "mode": mode,
                    "size": size,
                    "one_device_s": round(times["one"], 4),
                    "all_devices_s": round(times["all"], 4),
                    "ratio_one_over_all": round(times["one"] / times["all"], 2),
                    "identical": bool((images["one"] == images["all"]).all()),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"devices": len(jax.local_devices()), "jax": jax.__version__}))


if __name__ == "__main__":
    main()
