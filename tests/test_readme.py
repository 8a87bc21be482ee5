"""The README's "Use from JAX" examples run as written (in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT


def python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)


def test_use_from_jax_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks("Use from JAX")
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)


def test_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "Python" section, with ``../shared`` pointed at the shared inputs."""
    from tests.conftest import SHARED

    monkeypatch.chdir(tmp_path)
    blocks = python_blocks("Python")
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    for block in blocks:
        code = block.replace('"../shared/', f'"{SHARED}/')
        exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "zoom.png").exists()


def test_3d_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "3D" section's Python, with ``../shared`` pointed at the shared inputs."""
    from tests.conftest import SHARED

    monkeypatch.chdir(tmp_path)
    (block,) = python_blocks("3D: heightmaps, normals, meshes")
    namespace: dict[str, object] = {}
    exec(compile(block.replace('"../shared/', f'"{SHARED}/'), "README.md", "exec"), namespace)
    assert (tmp_path / "bear.stl").exists()
    assert namespace["heightmap"].z.shape == (256, 256)  # type: ignore[attr-defined]
