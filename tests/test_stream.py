"""Streamed renders: band by band into a file, identical to the whole image, resumable."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import prospero_jax as pj
from cli.main import app
from prospero_jax.io import stream as _stream
from prospero_jax.io.image import write_png_bands

SIZE, BAND = 300, 64  # 5 bands, the last one short


@pytest.fixture(scope="module")
def demo() -> pj.Program:
    return pj.shapes.demo_program()


@pytest.fixture(scope="module")
def expected(demo: pj.Program) -> np.ndarray:
    return pj.render(demo, SIZE)


def _read(path: Path) -> np.ndarray:
    return pj.read_pgm(path) if path.suffix == ".pgm" else np.asarray(Image.open(path))


@pytest.mark.parametrize("suffix", [".pgm", ".png"])
def test_the_file_is_the_whole_image(
    suffix: str, demo: pj.Program, expected: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / f"image{suffix}"
    report = pj.render_to_file(demo, out, SIZE, band_rows=BAND)
    np.testing.assert_array_equal(_read(out), expected)
    assert (report.bands, report.rendered, report.resumed) == (5, 5, 0)
    assert report.inside == pytest.approx((expected > 0).mean())
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # nothing else left


@pytest.mark.parametrize("mode", ["brute", "culled"])
def test_bands_are_the_rows_of_the_whole_image(
    mode: str, demo: pj.Program, expected: np.ndarray
) -> None:
    for start, stop in [(0, 1), (17, 80), (250, 300), (0, 300)]:
        band = pj.render(demo, SIZE, rows=(start, stop), mode=mode)
        np.testing.assert_array_equal(band, expected[start:stop])


class _Interrupt:
    """A progress callback that raises KeyboardInterrupt once ``after`` bands are done."""

    def __init__(self, after: int) -> None:
        self.after = after

    def __call__(self, done: int, total: int) -> None:
        if done >= self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize("suffix", [".pgm", ".png"])
def test_an_interrupted_render_resumes_and_gives_the_same_file(
    suffix: str, demo: pj.Program, tmp_path: Path
) -> None:
    whole, out = tmp_path / f"whole{suffix}", tmp_path / f"out{suffix}"
    pj.render_to_file(demo, whole, SIZE, band_rows=BAND)
    with pytest.raises(KeyboardInterrupt):
        pj.render_to_file(demo, out, SIZE, band_rows=BAND, progress=_Interrupt(2))
    partial, journal = pj.partial_paths(out)
    assert not out.exists()  # never half-written
    assert partial.exists()
    assert sorted(json.loads(journal.read_text())["done"]) == ["0", "1"]

    seen: list[tuple[int, int]] = []
    report = pj.render_to_file(
        demo, out, SIZE, band_rows=BAND, progress=lambda d, t: seen.append((d, t))
    )
    assert (report.rendered, report.resumed) == (3, 2)
    assert seen[0] == (2, 5)
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists()
    assert not journal.exists()


def test_a_journal_of_another_render_is_not_resumed(demo: pj.Program, tmp_path: Path) -> None:
    out = tmp_path / "out.pgm"
    with pytest.raises(KeyboardInterrupt):
        pj.render_to_file(demo, out, SIZE, band_rows=BAND, progress=_Interrupt(3))
    report = pj.render_to_file(demo, out, SIZE, band_rows=BAND, z=0.25)  # another render
    assert report.resumed == 0
    np.testing.assert_array_equal(pj.read_pgm(out), pj.render(demo, SIZE, z=0.25))

    with pytest.raises(KeyboardInterrupt):
        pj.render_to_file(demo, out, SIZE, band_rows=BAND, progress=_Interrupt(3))
    assert pj.render_to_file(demo, out, SIZE, band_rows=BAND, resume=False).resumed == 0

    with pytest.raises(KeyboardInterrupt):
        pj.render_to_file(demo, out, SIZE, band_rows=BAND, progress=_Interrupt(3))
    journal = pj.partial_paths(out)[1]
    journal.write_text("{not json")  # a damaged journal: start again
    assert pj.render_to_file(demo, out, SIZE, band_rows=BAND).resumed == 0


def test_an_interruption_before_any_band_leaves_nothing(demo: pj.Program, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        pj.render_to_file(demo, tmp_path / "out.png", SIZE, band_rows=BAND, progress=_Interrupt(0))
    assert not list(tmp_path.iterdir())


def test_a_second_writer_of_the_same_file_is_refused(demo: pj.Program, tmp_path: Path) -> None:
    out = tmp_path / "out.pgm"
    partial = pj.partial_paths(out)[0]
    with open(partial, "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another render is writing it"):
            pj.render_to_file(demo, out, SIZE, band_rows=BAND)
        assert partial.exists()  # the other writer's file is left alone
    assert not out.exists()


def test_bad_arguments(demo: pj.Program, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="greyscale"):
        pj.render_to_file(demo, tmp_path / "x.ppm", SIZE)
    with pytest.raises(ValueError, match="band rows"):
        pj.render_to_file(demo, tmp_path / "x.pgm", SIZE, band_rows=0)
    with pytest.raises(ValueError, match="rows must be"):
        pj.render(demo, SIZE, rows=(10, 10))


def test_png_bands_decode_to_the_image(tmp_path: Path) -> None:
    image = (np.random.default_rng(1).random((37, 53)) * 256).astype(np.uint8)
    path = tmp_path / "x.png"
    with open(path, "wb") as f:
        write_png_bands(f, 53, 37, [image[:10], image[10:11], image[11:]])
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    with open(path, "wb") as f, pytest.raises(ValueError, match="expected 37 rows"):
        write_png_bands(f, 53, 37, [image[:10]])


runner = CliRunner()


def test_cli_streams_and_resumes(
    demo: pj.Program, expected: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.png"
    real = _stream.render
    calls = []

    def flaky(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_stream, "render", flaky)
    args = ["render", "--no-cache", "--size", str(SIZE), "--band-rows", str(BAND), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 130
    assert "run the same command to resume" in result.stderr
    assert not out.exists()

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "resuming: 2 of 5 bands" in result.stderr
    assert "2 of 5 bands resumed" in result.stdout
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_cli_refuses_shading_a_streamed_render(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["render", "--no-cache", "--band-rows", "64", "--antialias", "-o", str(tmp_path / "a.png")],
    )
    assert result.exit_code == 2
    assert "not streamed" in result.stderr


def test_the_old_argument_order_is_refused_with_the_new_one(
    demo: pj.Program, tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match=r"render_to_file\(program, path, size\)"):
        pj.render_to_file(demo, SIZE, tmp_path / "x.pgm")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())  # nothing written
