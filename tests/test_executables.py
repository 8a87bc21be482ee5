"""Stored executables: a warm process loads the culled kernels instead of compiling them.

The renders here ask for the kernels (``tier="kernels"``): by default a single frame of a
sign program goes to the host tier, which has nothing to store.

XLA:CPU only serializes an executable it compiled once in its process, so the tests that
store files run in fresh processes, as the CLI does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.runtime import executables as _executables
from tests.conftest import shared_path

_RENDER = """
import json, sys
import numpy as np
import prospero_jax as pj
from prospero_jax.runtime import executables as _executables
pj.enable_compilation_cache(sys.argv[1])
image = pj.render(pj.shapes.demo_program(), 200, mode="culled", tier="kernels")
np.save(sys.argv[2], image)
print(json.dumps(_executables.store.counts))
"""


def _render_in_new_process(cache: Path, image: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _RENDER, str(cache), str(image)],
        capture_output=True,
        text=True,
        check=True,
    )
    counts: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return counts


def test_a_second_process_loads_what_the_first_compiled(tmp_path: Path) -> None:
    store = tmp_path / "cache" / "executables"
    first = _render_in_new_process(tmp_path / "cache", tmp_path / "first.npy")
    assert first == {"loaded": 0, "compiled": 3}  # prune kernels (4 × 4, 2 × 2), leaf kernel
    assert len(list(store.glob("*.bin"))) == 3
    assert not list(store.glob(".*"))  # no temporaries left

    second = _render_in_new_process(tmp_path / "cache", tmp_path / "second.npy")
    assert second == {"loaded": 3, "compiled": 0}
    expected = pj.render(pj.shapes.demo_program(), 200, mode="brute")
    np.testing.assert_array_equal(np.load(tmp_path / "first.npy"), expected)
    np.testing.assert_array_equal(np.load(tmp_path / "second.npy"), expected)

    for path in store.glob("*.bin"):  # damaged files are dropped and compiled again
        path.write_bytes(path.read_bytes()[:100])
    third = _render_in_new_process(tmp_path / "cache", tmp_path / "third.npy")
    assert third == {"loaded": 0, "compiled": 3}
    np.testing.assert_array_equal(np.load(tmp_path / "third.npy"), expected)
    assert _render_in_new_process(tmp_path / "cache", tmp_path / "4.npy")["loaded"] == 3

    # Another build's files (an upgrade, an edit) are removed when this build stores one.
    stale = store / "00000000-ffffffffffffffffffffffffffffffff.bin"
    stale.write_bytes(b"from another build")
    for path in store.glob(f"{_executables.build_tag()}-*.bin"):
        path.unlink()
    assert _render_in_new_process(tmp_path / "cache", tmp_path / "5.npy")["compiled"] == 3
    assert not stale.exists()
    assert len(list(store.glob("*.bin"))) == 3


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """A fresh executable directory; the suite's own is restored afterwards."""
    previous = _executables.store.directory
    _executables.set_directory(tmp_path)
    yield tmp_path
    _executables.set_directory(previous)


def test_in_process_the_image_is_right_whether_or_not_a_file_was_kept(
    hi: pj.Program, store: Path
) -> None:
    expected = pj.render(hi, 120, mode="brute")
    np.testing.assert_array_equal(pj.render(hi, 120, mode="culled", tier="kernels"), expected)
    _executables.forget()  # loads what was kept, compiles the rest
    np.testing.assert_array_equal(pj.render(hi, 120, mode="culled", tier="kernels"), expected)
    assert not list(store.glob(".*"))


def test_the_key_separates_options_shapes_and_dtypes() -> None:
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
    counts = dict(_executables.store.counts)
    pj.render(hi, 64, mode="culled", tier="kernels")
    assert _executables.store.counts == counts
    assert not list(store.iterdir())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_frames_kernels_are_prepared_at_once_before_it_runs(
    hi: pj.Program, store: Path, dtype: str
) -> None:
    from prospero_jax.renderers import hierarchy

    _executables.forget()
    root = hierarchy.root_tape(pj.specialise(hi), dtype)  # what the render below draws
    jobs = hierarchy._kernels(
        [k * k for k in hierarchy.splits(256 // 32)], len(root), dtype, 32, len(root.params)
    )
    assert len(jobs) == 3  # a 4 × 4 and a 2 × 2 prune kernel, and the leaf kernel
    counts = dict(_executables.store.counts)
    with pj.Target(dtype=dtype).precision():
        _executables.prepare(jobs, jax.devices()[0])
    assert _executables.store.counts["compiled"] == counts["compiled"] + 3
    # Stored, unless XLA:CPU compiled that kernel before in this process (the suite's other
    # tests): such a file would not run, so it is dropped (see _compile_and_store).
    assert len(list(store.glob("*.bin"))) <= 3
    # The render that follows finds every kernel ready: nothing more is compiled or loaded.
    image = pj.render(hi, 200, mode="culled", dtype=dtype, tier="kernels")
    assert _executables.store.counts["compiled"] == counts["compiled"] + 3
    assert _executables.store.counts["loaded"] == counts["loaded"]
    np.testing.assert_array_equal(image, pj.render(hi, 200, mode="brute", dtype=dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_calls_run_at_once_give_what_calls_one_at_a_time_give(
    monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    # On several cores a batch of kernel calls runs a thread each (whatever this machine
    # has, two here); their outputs come back in the calls' order, the same arrays, in the
    # caller's precision (a thread's own: float64 kernels in float64).
    from prospero_jax.renderers import kernel_calls

    program = pj.load(shared_path("models/bear.vm"))
    threaded: list[int] = []
    run_at_once = _executables.run_at_once

    def counted(work: object, items: list[object], threads: int) -> list[object]:
        threaded.append(len(items))
        return run_at_once(work, items, threads)  # type: ignore[arg-type]

    monkeypatch.setattr(kernel_calls._executables, "run_at_once", counted)
    frames = {}
    for cores in (1, 2):
        monkeypatch.setattr(kernel_calls._executables, "at_once", lambda _, c=cores: c)
        target = pj.Target(tier="kernels", dtype=dtype)  # "auto": the host tier, no calls
        frames[cores] = pj.render_heightmap(program, 96, region=(-1.5, 1.5) * 2, target=target)
        if cores == 1:
            assert not threaded
    assert threaded  # batches of several calls ran threaded
    assert max(threaded) > 1
    np.testing.assert_array_equal(frames[1].z, frames[2].z)
    np.testing.assert_array_equal(frames[1].normal, frames[2].normal)
    assert np.isfinite(frames[1].z).any()
    assert frames[2].normal.dtype == dtype


def _doubled(a: jax.Array) -> jax.Array:
    return a * 2 + 1


def test_threads_calling_a_kernel_not_yet_compiled_compile_it_once(store: Path) -> None:
    import threading

    kernel, device = jax.jit(_doubled), jax.devices()[0]
    args = (np.arange(12, dtype=np.float32).reshape(3, 4),)
    before = _executables.store.counts["compiled"]
    start = threading.Barrier(4)

    def call(_: int) -> np.ndarray:
        start.wait()
        return np.asarray(_executables.call(kernel, args, device))

    outs = _executables.run_at_once(call, range(4), 4)
    assert _executables.store.counts["compiled"] == before + 1
    for out in outs:
        np.testing.assert_array_equal(out, args[0] * 2 + 1)


def test_calls_at_once_run_in_the_callers_precision_and_context() -> None:
    # jax.enable_x64 is a thread's own, NumPy's errstate a context variable: a pool thread
    # has neither unless they are carried (a float64 kernel would get float32 arrays).
    def state(_: int) -> tuple[str, str]:
        return str(jax.numpy.zeros(1).dtype), np.geterr()["over"]

    for x64, dtype in ((True, "float64"), (False, "float32")):
        with jax.enable_x64(x64), np.errstate(over="ignore"):
            assert _executables.run_at_once(state, range(4), 2) == [(dtype, "ignore")] * 4
    assert _executables.run_at_once(state, range(2), 2)[0][1] == np.geterr()["over"]


def test_calls_at_once_are_the_cores_this_process_may_use() -> None:
    import os

    class Accelerator:
        platform = "gpu"

    assert _executables.at_once(Accelerator()) == 1  # type: ignore[arg-type]
    cpu = jax.devices("cpu")[0]
    if hasattr(os, "sched_getaffinity"):
        assert _executables.at_once(cpu) == len(os.sched_getaffinity(0))
