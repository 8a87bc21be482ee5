"""Batched renders: one program, many sets of constants, vmapped; and the sweep command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import prospero_jax as pj
from cli.main import app
from prospero_jax.renderers.batch import _batch_kernel
from tests.conftest import shared_path

SIZE = 96


@pytest.fixture(scope="module")
def quarter() -> pj.Program:
    return pj.load(shared_path("models/quarter.vm"))


def test_sweep_constants_sets_one_column(quarter: pj.Program) -> None:
    demo = pj.shapes.demo_program()
    name = demo.constant_ids[3]
    table = pj.sweep_constants(demo, name, [0.1, 0.2, 0.3])
    assert table.shape == (3, demo.constants.size)
    np.testing.assert_array_equal(table[:, 3], [0.1, 0.2, 0.3])
    others = np.delete(table, 3, axis=1)
    np.testing.assert_array_equal(others, np.delete(demo.constants, 3)[None].repeat(3, axis=0))
    with pytest.raises(ValueError, match="no instruction named"):
        pj.sweep_constants(quarter, "nope", [1.0])
    with pytest.raises(ValueError, match="not a const instruction"):
        pj.sweep_constants(quarter, "circle", [1.0])


@pytest.mark.parametrize("which", ["quarter", "demo"])
def test_every_frame_is_its_program_rendered(which: str, quarter: pj.Program) -> None:
    program = quarter if which == "quarter" else pj.shapes.demo_program()
    name = program.constant_ids[0]
    base = program.constants[0]
    table = pj.sweep_constants(program, name, base * np.array([0.6, 1.0, 1.3, 1.7]))
    brute = pj.render_batch(program, table, SIZE, mode="brute")
    culled = pj.render_batch(program, table, SIZE, mode="culled")
    assert brute.shape == (4, SIZE, SIZE)
    np.testing.assert_array_equal(brute, culled)
    for row, image in zip(table, brute, strict=True):
        values = pj.reference.values(program.with_constants(row), SIZE)
        differ = image != pj.reference.to_pixels(values)
        assert np.all(np.abs(values[differ]) < 1e-5)
    assert len({image.tobytes() for image in brute}) == 4  # the sweep changes the picture


def test_one_compilation_serves_every_set_of_constants(quarter: pj.Program) -> None:
    kernel = _batch_kernel(quarter)
    pj.render_batch(quarter, [[0.3], [0.5]], SIZE, mode="brute")
    compiled = kernel._cache_size()
    pj.render_batch(quarter, [[0.7], [0.9]], SIZE, mode="brute")
    pj.render_batch(quarter, [[0.1], [0.2]], SIZE + 5, mode="brute")
    assert kernel._cache_size() == compiled


def test_bad_constants(quarter: pj.Program) -> None:
    with pytest.raises(ValueError, match=r"shape \(batch, 1\)"):
        pj.render_batch(quarter, [0.3, 0.5], SIZE)
    with pytest.raises(ValueError, match="mode must be"):
        pj.render_batch(quarter, [[0.3]], SIZE, mode="fast")


runner = CliRunner()


def test_cli_sweep_writes_frames(quarter: pj.Program, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    model = str(shared_path("models/quarter.vm"))
    args = ["sweep", model, "--no-cache", "--constant", "f", "--from", "0.2", "--to", "0.8",
            "--frames", "3", "-s", "64", "-o", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"frame_000{i}.png" for i in range(3)]
    for i, value in enumerate([0.2, 0.5, 0.8]):
        expected = pj.reference.render(quarter.with_constants(np.array([value])), 64)
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"frame_000{i}.png")), expected)


def test_cli_sweep_without_a_constant_lists_them() -> None:
    result = runner.invoke(app, ["sweep", str(shared_path("models/quarter.vm"))])
    assert result.exit_code == 2
    assert "one of f" in result.stderr
