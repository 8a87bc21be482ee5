"""The typer app, driven through CliRunner: renders, info, and one-line errors (exit 2)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import prospero_jax as pj
from cli.main import app
from prospero_jax.renderers.shade import outline_band
from tests.conftest import shared_path
from tests.test_parse import BAD

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_render_with_no_arguments_draws_the_demo(tmp_path: Path) -> None:
    code, out, err = invoke("render", "--no-cache")
    assert code == 0, err
    assert "wrote demo.png (1024×1024" in out
    image = np.asarray(Image.open(tmp_path / "demo.png"))
    assert np.array_equal(image, pj.reference.render(pj.shapes.demo_program(), 1024))


@pytest.mark.slow
def test_render_prospero_float64_to_pgm_matches_the_oracle(tmp_path: Path) -> None:
    path = shared_path("prospero.vm")
    code, _, err = invoke("render", str(path), "--size", "256", "--dtype", "float64", "-o", "p.pgm")
    assert code == 0, err
    data = (tmp_path / "p.pgm").read_bytes()
    assert data.startswith(b"P5\n256 256\n255\n")
    assert len(data) == 15 + 256 * 256
    expected = pj.reference.render(pj.load(path), 256)
    assert np.array_equal(pj.read_pgm(tmp_path / "p.pgm"), expected)


def test_render_options(tmp_path: Path) -> None:
    model = shared_path("models/quarter.vm")
    for mode in ("brute", "culled"):
        args = ("render", str(model), "-s", "32", "--region", "-1,0,-1,0", "--mode", mode)
        code, out, _ = invoke(*args)
        assert code == 0
        assert "quarter.png" in out
        images = np.asarray(Image.open(tmp_path / "quarter.png"))
        assert np.array_equal(images, pj.render(pj.load(model), 32, region=(-1, 0, -1, 0)))


@pytest.mark.parametrize("kind", BAD)
def test_bad_programs_exit_2_with_one_line(kind: str, tmp_path: Path) -> None:
    text, _line, fragment = BAD[kind]
    (tmp_path / "bad.vm").write_text(text)
    for command in ("render", "info"):
        code, out, err = invoke(command, "bad.vm")
        assert code == 2
        assert err.count("\n") == 1
        assert err.startswith("error: bad.vm:")
        assert fragment in err
        assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("render", "absent.vm"), "absent.vm: no such file"),
        (("info", "absent.vm"), "absent.vm: no such file"),
        (("render", "binary.vm"), "not a text file"),
        (("render", "."), "is a directory"),
        (("render", "-o", "out.jpg", "-s", "8"), "unsupported image format '.jpg'"),
        (("render", "-o", "nowhere/out.png", "-s", "8"), "does not exist"),
        (("render", "--region", "1,2,3", "-s", "8"), "--region must be"),
        (("render", "--device", "tpu", "-s", "8"), "no 'tpu' device available"),
        (("render", "--devices", "9", "-s", "8"), "--devices 9: 1 cpu device(s) here"),
        (("render", "--devices", "some", "-s", "8"), "--devices must be 'all' or a count"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: tuple[str, ...], fragment: str, tmp_path: Path
) -> None:
    (tmp_path / "binary.vm").write_bytes(bytes(range(256)))
    code, _, err = invoke(*args)
    assert code == 2
    assert err.count("\n") == 1
    assert fragment in err
    assert not list(tmp_path.glob("*.png"))
    assert not list(tmp_path.glob("*.part"))


def test_info_table_and_json() -> None:
    model = str(shared_path("models/hi.vm"))
    code, out, _ = invoke("info", model)
    assert code == 0
    assert "instructions" in out
    assert "max live values" in out
    assert "sqrt" in out
    code, out, _ = invoke("info", model, "--json")
    facts = json.loads(out)
    assert facts["instructions"] == 56
    assert facts["histogram"]["max"] == 14
    assert facts["inputs"] == ["var-x", "var-y"]
    assert facts["dimensions"] == 2
    code, out, _ = invoke("info", str(shared_path("models/bear.vm")), "--json")
    assert json.loads(out)["dimensions"] == 3


def test_version_and_help() -> None:
    code, out, _ = invoke("--version")
    assert code == 0
    assert out.strip() == f"prospero-jax {pj.__version__}"
    code, out, _ = invoke("render", "--help")
    assert code == 0
    assert "--size" in out
    assert "demo" in out


def test_antialias_and_shade(tmp_path: Path) -> None:
    code, _, err = invoke("render", "--size", "96", "--antialias", "-o", "aa.png")
    assert code == 0, err
    grey = np.asarray(Image.open(tmp_path / "aa.png"))
    binary = pj.reference.render(pj.shapes.demo_program(), 96)
    assert grey.shape == (96, 96)
    assert ((grey > 0) & (grey < 255)).any()
    assert not (grey != binary)[~outline_band(binary > 0, 1)].any()  # only the outline is grey
    for kind in ("normals", "gradient"):
        code, _, err = invoke("render", "--size", "64", "--shade", kind, "-o", f"{kind}.ppm")
        assert code == 0, err
        assert np.asarray(Image.open(tmp_path / f"{kind}.ppm")).shape == (64, 64, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shade", "normals", "-o", "x.pgm"], "PGM is greyscale"),
        (["--antialias", "--shade", "normals"], "exclusive"),
        (["-o", "x.ppm"], "PPM is for colour"),
    ],
)
def test_shading_option_errors(args: list[str], message: str, tmp_path: Path) -> None:
    code, _, err = invoke("render", "--size", "8", *args)
    assert code == 2
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_commands_freeze_the_imports_for_the_collector(tmp_path: Path) -> None:
    # A full collection walking JAX's ~100k imported objects fell inside renders (20-50 ms
    # of a warm `prospero render`): every command freezes them first.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    code, _, err = invoke("info", str(shared_path("models/hi.vm")))
    assert code == 0, err
    assert gc.get_freeze_count() > 10_000
    gc.unfreeze()
