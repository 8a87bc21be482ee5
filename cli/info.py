"""``prospero info``: facts about a program (:func:`prospero_jax.describe`), as tables or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import prospero_jax as pj
from cli.app import FileArg, app, load, user_errors


@app.command()
def info(
    file: FileArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
) -> None:
    """Describe a program: size, opcodes, constants, depth and liveness.

    "max live values" is the most values alive at once when evaluating in order and
    freeing each after its last use: it bounds the memory of an interpreter like the
    oracle.
    """
    with user_errors():
        facts = pj.describe(load(file))
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    simple, consts = facts["simplified"], facts["constants"]
    table = Table(title=facts["source"], show_header=False, title_justify="left")
    rows = {
        "instructions": f"{facts['instructions']:,}",
        "inputs": ", ".join(facts["inputs"]) or "none",
        "dimensions": "3 (a solid: see `prospero render3d`)" if facts["dimensions"] == 3 else "2",
        "depth": f"{facts['depth']:,}",
        "max live values": f"{facts['max_live']:,}",
        "constants": f"{consts['count']:,} ({consts['distinct']:,} distinct, "
        f"range {consts['min']:g} … {consts['max']:g})"
        if consts["count"]
        else "none",
        "after simplify": f"{simple['instructions']:,} instructions "
        f"({simple['non_constant']:,} non-constant), max live {simple['max_live']:,}",
        "digest": facts["digest"][:16],
    }
    for name, value in rows.items():
        table.add_row(name, value)
    histogram = Table("opcode", "count", "share", title="opcodes", title_justify="left")
    for name, count in facts["histogram"].items():
        histogram.add_row(name, f"{count:,}", f"{count / facts['instructions']:.1%}")
    out = Console()
    out.print(table)
    out.print(histogram)
