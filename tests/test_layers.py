"""The folders are layers (ARCHITECTURE.md): imports point down the pipeline, never up.

Every module of ``prospero_jax`` is read (not imported) and each ``prospero_jax.X`` it
imports must be its own layer or one listed for it below; the IR imports no JAX.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "prospero_jax"
#: What each layer may import, besides itself.
ALLOWED = {
    "ir": set(),
    "evaluators": {"ir", "runtime"},
    "runtime": set(),
    "renderers": {"ir", "evaluators", "runtime"},
    "io": {"ir", "evaluators", "runtime", "renderers"},
    "benchmarks": {"ir", "evaluators", "runtime", "renderers", "io"},
}


def imports(path: Path) -> set[str]:
    """The top-level modules and ``prospero_jax`` subpackages a file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "prospero_jax" and len(parts) == 1:
                found |= {f"prospero_jax.{alias.name}" for alias in node.names}
            else:
                found.add(".".join(parts[:2]) if parts[0] == "prospero_jax" else parts[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down_the_pipeline(layer: str) -> None:
    for path in sorted((PACKAGE / layer).glob("*.py")):
        ours = {m.split(".")[1] for m in imports(path) if m.startswith("prospero_jax.")}
        upward = ours - ALLOWED[layer] - {layer}
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}"


def test_the_ir_imports_no_jax() -> None:
    for path in sorted((PACKAGE / "ir").glob("*.py")):
        assert "jax" not in imports(path), path.name
