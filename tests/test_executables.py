"""Stored executables: a warm process loads the culled kernels instead of compiling them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax import _executables


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """A fresh executable directory; the suite's own is restored afterwards."""
    previous = _executables._directory
    _executables.set_directory(tmp_path)
    yield tmp_path
    _executables.set_directory(previous)


def _new_process() -> None:
    """Forget the executables held in memory, as a new process would not have them."""
    _executables._loaded.clear()


def test_a_second_process_loads_what_the_first_compiled(hi: pj.Program, store: Path) -> None:
    before = dict(_executables.counts)
    first = pj.render(hi, 200, mode="culled")
    compiled = _executables.counts["compiled"] - before["compiled"]
    assert compiled >= 2
    assert len(list(store.glob("*.bin"))) == compiled
    _new_process()
    second = pj.render(hi, 200, mode="culled")
    assert _executables.counts["compiled"] - before["compiled"] == compiled  # none more
    assert _executables.counts["loaded"] - before["loaded"] == compiled
    np.testing.assert_array_equal(first, second)
    assert not list(store.glob(".*"))  # no temporaries left


def test_a_damaged_file_is_compiled_again(hi: pj.Program, store: Path) -> None:
    expected = pj.render(hi, 96, mode="culled")
    for path in store.glob("*.bin"):
        path.write_bytes(path.read_bytes()[:100])
    _new_process()
    compiled = _executables.counts["compiled"]
    np.testing.assert_array_equal(pj.render(hi, 96, mode="culled"), expected)
    assert _executables.counts["compiled"] > compiled
    _new_process()
    loaded = _executables.counts["loaded"]
    np.testing.assert_array_equal(pj.render(hi, 96, mode="culled"), expected)
    assert _executables.counts["loaded"] > loaded  # the rewritten files load


def test_the_key_separates_options_shapes_and_dtypes() -> None:
    import jax

    device = jax.devices()[0]
    f32, f16 = np.zeros(4, np.float32), np.zeros(4, np.float16)
    key = _executables._key
    assert key(np.sin, (f32,), {"side": 8}, device) == key(np.sin, (f32,), {"side": 8}, device)
    assert key(np.sin, (f32,), {"side": 8}, device) != key(np.sin, (f32,), {"side": 16}, device)
    assert key(np.sin, (f32,), {}, device) != key(np.sin, (f16,), {}, device)
    assert key(np.sin, (f32,), {}, device) != key(np.sin, (f32[:2],), {}, device)
    assert key(np.sin, (f32,), {}, device) != key(np.cos, (f32,), {}, device)


def test_without_a_directory_the_plain_jit_is_called(hi: pj.Program, store: Path) -> None:
    _executables.set_directory(None)
    counts = dict(_executables.counts)
    pj.render(hi, 64, mode="culled")
    assert _executables.counts == counts
    assert not list(store.iterdir())
