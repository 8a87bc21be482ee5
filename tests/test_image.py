"""Image files: PGM bytes, PNG round trip, atomic writes that leave nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from PIL import Image

import prospero_jax as pj
from prospero_jax.runtime.files import atomic_write

PIXELS = np.array([[0, 255, 0], [255, 255, 10]], dtype=np.uint8)


def test_pgm_is_the_challenges_p5(tmp_path: Path) -> None:
    pj.write_image(tmp_path / "a.pgm", PIXELS)
    assert (tmp_path / "a.pgm").read_bytes() == b"P5\n3 2\n255\n" + PIXELS.tobytes()
    assert np.array_equal(pj.read_pgm(tmp_path / "a.pgm"), PIXELS)


def test_pgm_whose_pixels_start_with_whitespace_bytes(tmp_path: Path) -> None:
    pixels = np.array([[10, 32, 9]], dtype=np.uint8)  # "\n", " ", "\t"
    pj.write_image(tmp_path / "w.pgm", pixels)
    assert np.array_equal(pj.read_pgm(tmp_path / "w.pgm"), pixels)


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    pj.write_image(tmp_path / "a.pgm", PIXELS)
    (tmp_path / "b").write_bytes(b"")
    assert (tmp_path / "a.pgm").stat().st_mode == (tmp_path / "b").stat().st_mode


def test_png_round_trips(tmp_path: Path) -> None:
    pj.write_image(tmp_path / "a.PNG", PIXELS)
    image = Image.open(tmp_path / "a.PNG")
    assert image.mode == "L"
    assert np.array_equal(np.asarray(image), PIXELS)


def test_unsupported_extension_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported image format"):
        pj.write_image(tmp_path / "a.bmp", PIXELS)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "out.pgm"
    target.write_bytes(b"old")

    def fail_halfway(f: BinaryIO) -> None:
        f.write(b"P5\n")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, fail_halfway)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pgm"]


@pytest.mark.parametrize("name", ["rgb.png", "rgb.ppm"])
def test_colour_images_round_trip(tmp_path: Path, name: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    pj.write_image(tmp_path / name, pixels)
    assert np.array_equal(np.asarray(Image.open(tmp_path / name)), pixels)
    with pytest.raises(ValueError, match="PGM is greyscale"):
        pj.write_image(tmp_path / "rgb.pgm", pixels)
    with pytest.raises(ValueError, match=r"\(h, w\) or \(h, w, 3\)"):
        pj.write_image(tmp_path / "bad.png", pixels[..., :2])
