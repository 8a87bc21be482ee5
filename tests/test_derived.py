"""Derived programs kept on disk (runtime/derived.py): a warm process reads the sign
program instead of deriving it; damaged, foreign and other builds' files are never
served."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.renderers import render as _render
from prospero_jax.runtime import derived
from prospero_jax.runtime import executables as _executables


@pytest.fixture(autouse=True)
def keep_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' builds are quick: keep them all the same."""
    monkeypatch.setattr(derived, "WORTH_KEEPING_S", 0.0)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """A fresh cache directory (executables and derived files); the suite's is restored."""
    previous = _executables.store.directory
    _executables.set_directory(tmp_path / "executables")
    yield tmp_path / "derived"
    _executables.set_directory(previous)


def test_a_program_survives_bytes(prospero: pj.Program) -> None:
    sign = pj.specialise(prospero)
    back = pj.Program.from_bytes(sign.to_bytes())
    assert back == sign
    assert back.ids == sign.ids
    assert back.source == sign.source
    assert np.array_equal(back.params, sign.params)
    with pytest.raises(ValueError, match="earlier instruction"):
        pj.Program.from_bytes(_bad_bytes())


def _bad_bytes() -> bytes:
    """A program's bytes whose second row reads itself."""
    out = io.BytesIO()
    np.savez(
        out, opcodes=np.array([0, 22]), args=np.array([[-1, -1], [1, 0]]), consts=np.zeros(2),
        params=np.zeros((0, 16)), ids=np.array("x\ny"), source=np.array("<bad>"),
    )  # fmt: skip
    return out.getvalue()


def test_without_a_directory_it_builds_every_time(tmp_path: Path) -> None:
    previous = _executables.store.directory
    _executables.set_directory(None)
    try:
        calls: list[int] = []

        def build() -> bytes:
            calls.append(1)
            return b"abc"

        for _ in range(2):
            assert derived.kept("x", build, bytes.upper) == b"ABC"
        assert len(calls) == 2
        assert derived.directory() is None
    finally:
        _executables.set_directory(previous)


def test_a_second_read_skips_the_build(cache: Path) -> None:
    calls: list[int] = []

    def build() -> bytes:
        calls.append(1)
        return b"payload"

    assert derived.kept("k", build, bytes.decode) == "payload"
    assert derived.kept("k", build, bytes.decode) == "payload"
    assert calls == [1]
    (stored,) = cache.glob("*.bin")
    assert stored.name.startswith(f"{_executables.build_tag()}-")
    assert not list(cache.glob(".*"))  # no temporaries left


def test_damaged_files_and_other_builds_files_are_replaced(cache: Path) -> None:
    derived.kept("p", lambda: pj.shapes.demo_program().to_bytes(), pj.Program.from_bytes)
    (stored,) = cache.glob("*.bin")
    stored.write_bytes(stored.read_bytes()[:50])  # cut short
    stale = cache / "00000000-p.bin"
    stale.write_bytes(b"another build's")
    again = derived.kept("p", lambda: pj.shapes.demo_program().to_bytes(), pj.Program.from_bytes)
    assert again == pj.shapes.demo_program()
    assert pj.Program.from_bytes(stored.read_bytes()) == again
    assert not stale.exists()


def test_an_unwritable_cache_still_gives_the_result(cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the folder should be")
    assert derived.kept("q", lambda: b"ok", bytes.decode) == "ok"


def test_renders_read_the_stored_sign_program(
    cache: Path, hi: pj.Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = pj.specialise(hi)
    first = _render.sign_program.__wrapped__(hi)
    assert first == expected
    monkeypatch.setattr(_render, "specialise", lambda p: pytest.fail("derived again"))
    second = _render.sign_program.__wrapped__(hi)
    assert second == expected
    assert second.ids == expected.ids


def test_quick_builds_are_not_kept_and_only_the_newest_files_are(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(derived, "WORTH_KEEPING_S", 60.0)
    derived.kept("quick", lambda: b"x", bytes.decode)
    assert not cache.exists() or not list(cache.glob("*.bin"))
    monkeypatch.setattr(derived, "WORTH_KEEPING_S", 0.0)
    monkeypatch.setattr(derived, "KEEP", 3)
    for i in range(5):
        derived.kept(f"n{i}", lambda: b"x", bytes.decode)
    kept = sorted(f.name.split("-", 1)[1] for f in cache.glob("*.bin"))
    assert len(kept) == 3


def test_a_file_read_is_kept_over_newer_files_never_read(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What is kept is what was used last: a file read again outlives files written after
    # it (the viewer's turned views must not push out prospero's sign program).
    monkeypatch.setattr(derived, "KEEP", 3)
    derived.kept("used", lambda: b"x", bytes.decode)
    for i in range(4):
        derived.kept(f"n{i}", lambda: b"x", bytes.decode)
        path = next(cache.glob("*-used.bin"))
        old = path.stat().st_mtime - 60
        os.utime(path, (old, old))  # written long ago
        assert derived.kept("used", lambda: pytest.fail("built again"), bytes.decode) == "x"
    kept = sorted(f.name.split("-", 1)[1] for f in cache.glob("*.bin"))
    assert kept == ["n2.bin", "n3.bin", "used.bin"]
