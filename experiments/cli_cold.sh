#!/usr/bin/env bash
# A cold CLI render (empty caches), a warm one and a bare `import cli.main`, side by side for
# two source trees (each round alternates them), so that compile-time changes are measured in
# one loop on one machine:
#
#   bash experiments/cli_cold.sh /tmp/before-tree . [ROUNDS=3] [SIZE=1024]
#
# Each tree runs with PYTHONPATH pointing at it (the venv's own packages otherwise).
# Prints "tree round cold warm import frozen" lines, in seconds: "frozen" is the same import
# followed by gc.freeze(), as every CLI command starts (a process whose imported objects are
# frozen also exits ~0.15 s sooner: its final collection skips them), the fair denominator.
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); rounds=${3:-3}; size=${4:-1024}
program=$(cd "$(dirname "$0")/../.." && pwd)/shared/prospero.vm
python=${PYTHON:-python}
seconds() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1; }
for r in $(seq "$rounds"); do
  for tree in "$before" "$after"; do
    cache=$(mktemp -d)
    cold=$(cd "$tree" && XDG_CACHE_HOME=$cache PYTHONPATH=$tree seconds "$python" -m cli render "$program" --size "$size" -o "$cache/p.pgm")
    warm=$(cd "$tree" && XDG_CACHE_HOME=$cache PYTHONPATH=$tree seconds "$python" -m cli render "$program" --size "$size" -o "$cache/p.pgm")
    bare=$(cd "$tree" && PYTHONPATH=$tree seconds "$python" -c "import cli.main")
    frozen=$(cd "$tree" && PYTHONPATH=$tree seconds "$python" -c "import cli.main, gc; gc.freeze()")
    echo "$tree $r $cold $warm $bare $frozen"
    rm -rf "$cache"
  done
done
