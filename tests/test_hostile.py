"""Hostile input: what a careless or malicious user feeds the parser, the library and the CLI.

Every `.vm` input is either a Program or one :class:`VMError` line (``FILE:LINE: what``);
every bad CLI value is exit status 2 with one stderr line naming the option or file, no
traceback, no warning and nothing left on disk; a full disk is named, and a streamed
render stopped by it keeps what it did and says how to resume. ``PROSPERO_EXAMPLES``
(environment) scales the fuzzing up for a longer run (``experiments/RESULTS.md``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prospero_jax as pj
from tests.conftest import shared_path
from tests.programs import examples, programs
from tests.test_cli import _in_tmp, invoke  # noqa: F401  (the fixture runs every test in tmp)

# --- 1. parsing: mutation fuzzing ------------------------------------------------------


def mutate(lines: list[str], rng: random.Random) -> str:
    """One of the ways a `.vm` file goes wrong: lines lost, swapped, repeated, corrupted."""
    lines = list(lines)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        kind = rng.randrange(9)
        if kind == 0:
            del lines[i]
        elif kind == 1:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == 2:
            lines.insert(i, lines[i])
        elif kind == 3:  # a token replaced by another line's token
            fields = lines[i].split()
            other = rng.choice(lines).split() or ["x"]
            if fields:
                fields[rng.randrange(len(fields))] = rng.choice(other)
            lines[i] = " ".join(fields)
        elif kind == 4:  # random bytes, decoded leniently
            lines[i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12))).decode(
                "latin-1"
            )
        elif kind == 5:  # unicode: a BOM, odd spaces, line separators, other digits
            lines[i] = lines[i].replace(" ", rng.choice(["\u00a0", "\u2028", "\x0c", "\x85"]))
            lines[i] = rng.choice(["\ufeff", "", "٥", "１"]) + lines[i]
        elif kind == 6:  # a huge or tiny constant
            value = rng.choice(["1e39", "-1e-45", "1e308", "9" * 400, "nan", "0x10", "1_0"])
            lines[i] = f"{lines[i].split(' ')[0]} const {value}"
        elif kind == 7:  # a truncated line
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        else:  # carriage returns
            lines[i] = lines[i] + rng.choice(["\r", "\r\r", ""])
    return "\n".join(lines)


@pytest.mark.parametrize("model", ["models/hi.vm", "models/quarter.vm", "models/bear.vm"])
def test_mutated_programs_parse_or_fail_with_one_line(model: str) -> None:
    lines = shared_path(model).read_text().splitlines()
    rng = random.Random(model)
    outcomes = {"parsed": 0, "rejected": 0}
    for _ in range(examples(150)):
        text = mutate(lines, rng)
        try:
            program = pj.parse(text, source="m.vm")
        except pj.VMError as err:
            message = str(err)
            assert "\n" not in message, message
            assert message.startswith("m.vm:"), message
            assert len(message) < 300, message
            outcomes["rejected"] += 1
        else:
            assert len(program) > 0
            outcomes["parsed"] += 1
    assert outcomes["rejected"] > 0, outcomes
    assert outcomes["parsed"] > 0, outcomes


@settings(max_examples=examples(100), deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_fails_with_one_line(text: str) -> None:
    try:
        pj.parse(text, source="t.vm")
        message = "t.vm"
    except pj.VMError as err:
        message = str(err)
    assert "\n" not in message
    assert message.startswith("t.vm")


# --- 7. lenient, confusing parsing -------------------------------------------------------


def test_a_leading_byte_order_mark_is_skipped() -> None:
    assert pj.parse("\ufeff# model\nx var-x").ids == ("x",)
    assert pj.parse("\ufeff_0 var-x\n_1 neg _0").ids == ("_0", "_1")


def test_lines_end_only_at_newlines_and_carriage_returns() -> None:
    assert pj.parse("x var-x\r\ny var-y\rz add x y").ids == ("x", "y", "z")
    for separator in ("\u2028", "\x85", "\x1c"):
        with pytest.raises(pj.VMError, match=r"<string>:1: unexpected whitespace U\+"):
            pj.parse(f"x var-x{separator}y var-y")
    # A bad third line is reported as line 3, as an editor numbers it.
    with pytest.raises(pj.VMError, match=r"<string>:3: unknown opcode"):
        pj.parse("x var-x\x0c\ny var-y\nz nope x")


@pytest.mark.parametrize("token", ["٥", "１", "1_000", "0x10", "1e", "--1", "١.٥"])
def test_constants_are_ascii_decimal_numbers(token: str) -> None:
    with pytest.raises(pj.VMError, match="is not a number"):
        pj.parse(f"c const {token}")


def test_non_breaking_space_is_not_a_separator() -> None:
    with pytest.raises(pj.VMError, match=r"U\+00A0.*separated by spaces or tabs"):
        pj.parse("x\u00a0var-x")


def test_echoed_text_is_clipped() -> None:
    with pytest.raises(pj.VMError) as caught:
        pj.parse("c const " + "9" * 5000)
    assert len(str(caught.value)) < 120
    assert "…" in str(caught.value)


# --- 3. input read whole, without a limit ------------------------------------------------


def test_a_device_is_read_up_to_the_limit() -> None:
    with pytest.raises(pj.VMError, match="/dev/zero: larger than 64 MiB"):
        pj.load("/dev/zero")
    code, _, err = invoke("render", "/dev/zero", "--no-cache")
    assert code == 2
    assert err.splitlines() == ["error: /dev/zero: larger than 64 MiB, the limit for a .vm program"]


# --- 2. an inverted region ---------------------------------------------------------------


@pytest.mark.parametrize(
    "region",
    [(1, -1, -1, 1), (-1, 1, 1, -1), (0, 0, -1, 1), (np.nan, 1, -1, 1), (-1e300, 1e300, -1, 1)],
)
def test_every_renderer_rejects_a_bad_region(
    quarter: pj.Program, region: tuple[float, ...], tmp_path: Path
) -> None:
    calls = {
        "brute": lambda: pj.render(quarter, 16, region=region, mode="brute"),
        "culled": lambda: pj.render(quarter, 16, region=region, mode="culled"),
        "oracle": lambda: pj.reference.render(quarter, 16, region),
        "gradient": lambda: pj.sample_gradient(quarter, 16, region=region),
        "batch": lambda: pj.render_batch(quarter, quarter.constants[None], 16, region=region),
        "stream": lambda: pj.render_to_file(quarter, tmp_path / "q.pgm", 16, region=region),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="region"):
            call()
        assert list(tmp_path.iterdir()) == [], name


# --- 4., 6. numbers out of range, through the CLI ---------------------------------------

BEAR, HI = str(shared_path("models/bear.vm")), str(shared_path("models/hi.vm"))

BAD_OPTIONS = {
    "--size 1000000000": (["render", "-o", "o.pgm", "--size", "1000000000"], "--size"),
    "--size 0": (["render", "--size", "0"], "--size"),
    "--size abc": (["render", "--size", "abc"], "--size"),
    "--region inf": (["render", "--region=-inf,inf,-1,1"], "--region"),
    "--region huge": (["render", "--region=-1e300,1e300,-1,1"], "--region"),
    "--region inverted": (["render", "--region", "1,-1,-1,1"], "--region"),
    "--region short": (["render", "--region", "1,2"], "--region"),
    "--z nan": (["render", "--z", "nan"], "--z"),
    "--z inf": (["render", "--z", "inf"], "--z"),
    "--mode": (["render", "--mode", "fast"], "--mode"),
    "--dtype": (["render", "--dtype", "float16"], "--dtype"),
    "--band-rows 0": (["render", "--band-rows", "0"], "--band-rows"),
    "--devices": (["render", "--devices", "many"], "--devices"),
    "--output format": (["render", "-o", "out.jpg"], "out.jpg"),
    "--output dir": (["render", "-o", "missing/out.png"], "missing"),
    "missing file": (["render", "missing.vm"], "missing.vm"),
    "sweep --to": (["sweep", "--constant", "x", "--to", "1e400"], "--to"),
    "sweep --from": (["sweep", "--constant", "x", "--from", "nan"], "--from"),
    "sweep --frames": (["sweep", "--frames", "0"], "--frames"),
    "sweep --size": (["sweep", "--size", "-5"], "--size"),
    "sweep --format": (["sweep", "--constant", "x", "--format", "gif"], "--format"),
    "bench --sizes": (["bench", "--sizes", "0,abc"], "--sizes"),
    "bench --sizes huge": (["bench", "--sizes", "9999999"], "--sizes"),
    "bench --budget": (["bench", "--budget", "nan"], "--budget"),
    "bench --repeats": (["bench", "--repeats", "1"], "--repeats"),
    "unknown option": (["render", "--colour"], "--colour"),
    # 3-D: sizes refused before any work, non-finite bounds and angles, 2-D programs.
    "mesh --resolution 1e9": (["mesh", BEAR, "--resolution", "1000000000"], "--resolution"),
    "mesh --resolution 1e5": (["mesh", BEAR, "--resolution", "100000"], "--resolution"),
    "mesh --resolution memory": (["mesh", BEAR, "--resolution", "4096"], "at most 2048"),
    "mesh --bounds inf": (["mesh", BEAR, "--bounds=-inf,inf"], "--bounds"),
    "mesh --bounds huge": (["mesh", BEAR, "--bounds=-1e308,1e308"], "--bounds"),
    "mesh --bounds nan": (["mesh", BEAR, "--bounds=nan,1"], "--bounds"),
    "mesh --bounds empty": (["mesh", BEAR, "--bounds=1,1"], "--bounds"),
    "mesh 2-D": (["mesh", HI], "a 2-D program"),
    "render3d --depth 1e9": (["render3d", BEAR, "--depth", "1000000000"], "--depth"),
    "render3d --depth 1e8": (["render3d", BEAR, "--depth", "100000000"], "--depth"),
    "render3d --size": (["render3d", BEAR, "--size", "100000"], "--size"),
    "render3d --turn": (["render3d", BEAR, "--turn", "nan"], "--turn"),
    "render3d --tilt": (["render3d", BEAR, "--tilt", "inf"], "--tilt"),
    "render3d 2-D": (["render3d", HI], "a 2-D program"),
    "view --port": (["view", HI, "--port", "70000", "--no-browser"], "--port"),
    "view a directory": (["view", ".", "--no-browser"], "not a regular file"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_option_values_are_one_line_naming_the_option(case: str, tmp_path: Path) -> None:
    args, named = BAD_OPTIONS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning would fail the test
        code, out, err = invoke(*args, *(["--no-cache"] if args[0] == "render" else []))
    lines = err.splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert named in lines[0], err
    assert "Traceback" not in err
    assert "Warning" not in err
    assert list(tmp_path.iterdir()) == [], "something was left behind"


# --- 5. a full disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root only: skipped elsewhere)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_named_and_nothing_is_left(small_disk: Path) -> None:
    code, _, err = invoke("render", "--no-cache", "-s", "1024", "-o", str(small_disk / "d.pgm"))
    assert code == 2
    assert err.splitlines() == [
        f"error: {small_disk / 'd.pgm'}: cannot write (nothing was written): "
        "No space left on device"
    ]
    assert list(small_disk.iterdir()) == []
    with pytest.raises(pj.FileWriteError, match=r"d\.png: cannot write"):
        pj.write_image(small_disk / "d.png", np.random.default_rng(0).integers(0, 255, (900, 900)))
    assert list(small_disk.iterdir()) == []


def test_a_streamed_render_that_fills_the_disk_keeps_its_bands(small_disk: Path) -> None:
    # 600² PGM = 360 kB: a 256 kB disk holds the first bands and not the rest.
    target = small_disk / "s.pgm"
    args = ["render", "--no-cache", "-s", "600", "--band-rows", "100", "-o", str(target)]
    code, _, err = invoke(*args)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {target}: No space left on device; "), err
    partial, journal = pj.partial_paths(target)
    kept = len(json.loads(journal.read_text())["done"])
    assert f"; {kept} of 6 bands are kept in {partial}" in lines[0]
    assert "run the same command to resume" in err
    assert partial.exists()
    assert journal.exists()
    assert not target.exists()
    subprocess.run(["mount", "-o", "remount,size=1m", str(small_disk)], check=True)
    code, out, err = invoke(*args)
    assert code == 0, err
    assert "bands resumed" in out
    assert np.array_equal(pj.read_pgm(target), pj.render(pj.shapes.demo_program(), 600))
    assert sorted(p.name for p in small_disk.iterdir()) == ["s.pgm"]


def test_a_streamed_render_whose_journal_cannot_be_written_says_one_true_thing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's own atomic write fails (its words: "nothing was written"): the error
    gives the cause alone, and counts the bands the journal on disk lists."""
    from prospero_jax.io import stream

    record, calls = stream._record, []

    def full_after_two(journal: Path, identity: dict, done: dict) -> None:  # type: ignore[type-arg]
        calls.append(len(done))
        if len(calls) > 3:  # the start, then two bands
            raise pj.FileWriteError(28, "cannot write (nothing was written): No space", "j")
        record(journal, identity, done)

    monkeypatch.setattr(stream, "_record", full_after_two)
    target = tmp_path / "s.pgm"
    with pytest.raises(pj.StreamError) as stopped:
        pj.render_to_file(pj.shapes.demo_program(), target, 160, band_rows=10)
    message = str(stopped.value)
    assert "nothing was written" not in message
    _, journal = pj.partial_paths(target)
    kept = len(json.loads(journal.read_text())["done"])
    assert kept == 2
    assert message.startswith(f"{target}: No space left on device; 2 of 16 bands are kept in ")


# --- 3-D arguments from Python ------------------------------------------------------------


SPHERE = "x var-x\ny var-y\nz var-z\na square x\nb square y\nc square z\ns add a b\nt add s c\n"
SPHERE += "r sqrt t\nk const 0.6\nq sub r k"


def test_3d_calls_check_their_arguments_before_any_work(quarter: pj.Program) -> None:
    sphere = pj.parse(SPHERE)
    assert len(pj.mesh(sphere, np.int64(8)).faces) > 0  # NumPy integers are integers
    assert pj.render_heightmap(sphere, 1).depth == 2  # the default depth: at least 2
    refused = {
        "depth must be at least 2": lambda: pj.surface_depth(sphere, 16, 1),
        "size must be a whole number": lambda: pj.render_heightmap(sphere, 16.5),
        "resolution must be a whole number": lambda: pj.mesh(sphere, 8.0),
        "resolution must be at least 4": lambda: pj.mesh(sphere, 3),
        "rotation must be": lambda: pj.render_heightmap(sphere, 8, rotation=np.eye(2)),
        "turn must be a finite": lambda: pj.view_rotation(np.inf, 0),
        "bounds must be finite": lambda: pj.mesh(sphere, 8, bounds=(-np.inf, np.inf)),
        "a 2-D program": lambda: pj.mesh(quarter, 8),
        "above the limit": lambda: pj.render_heightmap(sphere, 512, 10**8),
    }
    for message, call in refused.items():
        with pytest.raises(ValueError, match=message):
            call()


def test_a_wrong_number_of_constants_is_one_clear_error() -> None:
    import jax.numpy as jnp

    sphere = pj.parse(SPHERE)
    depth = pj.surface_depth(sphere, 16)
    for wrong in (jnp.zeros(3), jnp.zeros((1, 1)), jnp.array([1])):
        with pytest.raises(ValueError, match=r"constants must be a float array of shape \(1,\)"):
            depth(wrong)


@pytest.mark.parametrize(
    ("text", "bounds", "why"),
    [
        (SPHERE, (2.0, 3.0), "the mesh is empty: no grid point"),
        (SPHERE, (-0.2, 0.2), "the solid fills"),
        (SPHERE, (-0.5, 0.5), "the mesh is closed there with flat caps"),
    ],
    ids=["empty", "full", "capped"],
)
def test_an_empty_or_capped_mesh_says_why(text: str, bounds: tuple[float, float], why: str) -> None:
    with pytest.warns(pj.MeshWarning, match=why):
        pj.mesh(pj.parse(text), 16, bounds=bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a closed mesh: no warning of any kind
        pj.mesh(pj.parse(text), 16, bounds=(-1, 1))


def test_the_mesh_command_says_where_a_mesh_is_capped(tmp_path: Path) -> None:
    code, _, err = invoke("mesh", str(shared_path("models/tanglecube.vm")), "-r", "24")
    assert code == 0, err
    here = shared_path("models/tanglecube.vm")
    assert err.startswith(f"warning: {here}: the solid reaches the faces of the bounds")
    assert "widen the bounds" in err
    assert (tmp_path / "tanglecube.stl").exists()


# --- random programs of every opcode against the oracle -----------------------------------


@settings(max_examples=examples(25), deadline=None)
@given(programs(max_size=30))
def test_random_programs_render_as_the_oracle_in_both_modes(program: pj.Program) -> None:
    size = 24
    exact = pj.reference.values(program, size)
    ambiguous = np.abs(exact) < 1e-9  # where float64 rounding may decide the sign
    for mode in ("brute", "culled"):
        image = pj.render(program, size, mode=mode, dtype="float64")
        wrong = (image != pj.reference.to_pixels(exact)) & ~ambiguous
        assert not wrong.any(), f"{mode}: {int(wrong.sum())} pixels"


# --- an interrupt in every writer --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["render", "--no-cache", "-s", "64", "-o", "out.pgm"],
        ["render", "--no-cache", "-s", "64", "-o", "out.png"],
        ["render", "--no-cache", "-s", "64", "--shade", "normals", "-o", "out.ppm"],
        ["sweep", "--no-cache", "--constant", "_2", "--frames", "2", "-s", "32", "-o", "f"],
    ],
    ids=lambda args: f"{args[0]} {args[-1]}",
)
def test_an_interrupted_write_leaves_nothing(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prospero_jax.io import image as _image

    def interrupted(f: object, pixels: np.ndarray) -> None:
        f.write(b"P5\n")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    for name in ("_write_pnm", "_write_png"):
        monkeypatch.setattr(_image, name, interrupted)
    code, _, err = invoke(*args)
    assert code == 130, err
    assert err.splitlines() == ["interrupted: nothing was written"]
    left = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert left == [], left


def test_library_output_calls_check_everything_before_any_work(
    quarter: pj.Program, tmp_path: Path
) -> None:
    """render_file, render_frames and the renderers that take no band refuse bad arguments
    with a message saying what is wrong, and leave nothing on disk."""
    view, target = pj.View(32), pj.Target()
    cases = {
        "shading must be one of": lambda: pj.render_file(
            quarter, tmp_path / "a.png", view, target, shading="sepia"
        ),
        "PGM is greyscale": lambda: pj.render_file(
            quarter, tmp_path / "a.pgm", view, target, shading="normals"
        ),
        "not a band of rows": lambda: pj.render_file(
            quarter, tmp_path / "a.png", view.band(0, 8), target
        ),
        "shaded images are not streamed": lambda: pj.render_file(
            quarter, tmp_path / "a.png", view, target, shading="antialias", band_rows=8
        ),
        "must be finite": lambda: pj.render_frames(
            quarter, "_2", [0.1, np.inf], tmp_path / "f", view, target
        ),
        "png or pgm": lambda: pj.render_frames(
            quarter, "_2", [0.1], tmp_path / "f", view, target, image_format="gif"
        ),
        "no rows": lambda: pj.render_across_processes(quarter, view.band(0, 8)),
        "on one device": lambda: pj.sample_gradient(quarter, view.band(0, 8)),
    }
    for message, call in cases.items():
        with pytest.raises(ValueError, match=message):
            call()
    assert list(tmp_path.iterdir()) == []
