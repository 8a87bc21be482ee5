"""A benchmark report (:func:`prospero_jax.bench`'s dict) as tables, and saved as JSON.

Input: the report.
Output: rich renderables to print (:func:`tables`: a header, the times of every row with
its speed-up over the float64 oracle, the oracle's times, and memory, HLO and export
facts), or a JSON file written atomically (:func:`save`).
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO

from rich.console import RenderableType
from rich.table import Table

from prospero_jax.runtime.files import atomic_write


def seconds(value: float | None) -> str:
    """A duration for a table: ``12.3 ms`` below a second, ``1.23 s`` above, ``-`` if None."""
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def save(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``report`` as indented JSON to ``path``, atomically."""
    text = json.dumps(report, indent=2).encode()

    def write(f: BinaryIO) -> None:
        f.write(text)

    atomic_write(path, write)


def _repays(even: dict[str, Any] | None) -> str:
    if even is None:
        return "-"
    if even["frames"] == 0:
        return "soonest first image"
    if even["frames"] is None:
        return f"never (vs {even['against']})"
    return f"after {even['frames']:,} (vs {even['against']})"


def tables(report: dict[str, Any]) -> list[RenderableType]:
    """What ``prospero bench`` prints: a header line, the times, the oracle, and the facts."""
    parts: list[RenderableType] = []
    machine = report["machine"]
    parts.append(
        f"{report['program']['source']} ({report['program']['instructions']:,} instructions); "
        f"jax {report['jax']}, jaxlib {report['jaxlib']}; {machine['processor']}, "
        f"{machine['cpus']} CPUs; {report['settings']['dtype']}"
    )
    times = Table(
        "mode", "size", "device", "trace", "lower", "compile", "first run",
        "steady median [min–max]", "× oracle", "pixels ≠ oracle", "repays its compile",
        title="time (stages of the cold compile; steady: n renders; repays: after how many "
        "images its total time beats the mode with the soonest first image)",
        title_justify="left",
    )  # fmt: skip
    for row in report["results"]:
        steady = row["steady"]
        ratio = row["oracle_ratio"]
        times.add_row(
            row["mode"],
            f"{row['size']}²",
            row["device"],
            seconds(row["trace_s"]),
            seconds(row["lower_s"]),
            seconds(row["compile_s"]),
            seconds(row["first_run_s"]),
            f"{seconds(steady['median_s'])} [{seconds(steady['min_s'])}–"
            f"{seconds(steady['max_s'])}] n={steady['repeats']}",
            "-" if ratio is None else f"{ratio:.1f}×",
            "-" if row["pixels_differing"] is None else f"{row['pixels_differing']:,}",
            _repays(row.get("break_even")),
        )
    parts.append(times)
    oracle = ", ".join(
        f"{o['size']}²: {seconds(o['median_s'])}"
        if "median_s" in o
        else f"{o['size']}²: skipped ({o['skipped']})"
        for o in report["oracle"]
    )
    parts.append(f"float64 NumPy oracle (liveness GC), median: {oracle}")
    facts = Table(
        "mode", "size", "device", "compilations", "HLO instr.", "fusions", "largest fusion",
        "temp MB", "peak RSS MB", "warm compile", "export KB", "reload compile", "exe load",
        title="memory, HLO, warm persistent cache, jax.export (reloaded StableHLO is compiled "
        "again) and the serialized executable (loaded, not compiled)", title_justify="left",
    )  # fmt: skip
    for row in report["results"]:
        hlo, memory, warm, export = (row.get(k) for k in ("hlo", "memory", "warm_cache", "export"))
        facts.add_row(
            row["mode"],
            f"{row['size']}²",
            row["device"],
            str(row["compilations"]),
            f"{hlo['instructions']:,}" if hlo else "-",
            f"{hlo['fusions']:,}" if hlo else "-",
            f"{hlo['largest_fusion']:,}" if hlo else "-",
            f"{memory['temp_bytes'] / 2**20:.1f}" if memory else "-",
            "-" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}",
            seconds(warm["compile_s"]) if warm else "-",
            f"{export['bytes'] / 1024:.0f}" if export else "-",
            seconds(export["compile_s"]) if export else "-",
            seconds(export["executable_load_s"]) if export else "-",
        )
    parts.append(facts)
    return parts
