"""Run a command and report its wall time and peak RSS (of the child process tree).

python experiments/peak_rss.py prospero render ../shared/prospero.vm --size 16384 -o big.pgm
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def main() -> None:
    start = time.perf_counter()
    code = subprocess.call(sys.argv[1:])
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"exit {code}; wall {wall:.1f} s; peak RSS {peak:.0f} MB", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
