"""Medians and per-round ratios of ``experiments/cli_cold.sh``'s output:

    bash experiments/cli_cold.sh /tmp/before . 9 > results/cli.txt
    python experiments/cli_ratios.py results/cli.txt

For each tree: the medians of the cold render, the warm render, the bare import and (when
the file has it) the import followed by ``gc.freeze()``; then cold ÷ import and warm ÷
import, as the medians' ratio and as the rounds' ratios (min–max, median).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path


def main() -> None:
    rows = [line.split() for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
    for tree in dict.fromkeys(row[0] for row in rows):
        runs = [[float(v) for v in row[2:]] for row in rows if row[0] == tree]
        columns = list(zip(*runs, strict=True))
        names = ["cold", "warm", "import", "frozen import"][: len(columns)]
        medians = {name: statistics.median(c) for name, c in zip(names, columns, strict=False)}
        print(tree, ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()))
        for base in names[2:]:
            k = names.index(base)
            for what in ("cold", "warm"):
                j = names.index(what)
                ratios = [run[j] / run[k] for run in runs]
                print(
                    f"  {what} ÷ {base}: medians {medians[what] / medians[base]:.2f}, rounds "
                    f"{min(ratios):.2f}-{max(ratios):.2f} (median {statistics.median(ratios):.2f})"
                )


if __name__ == "__main__":
    main()
